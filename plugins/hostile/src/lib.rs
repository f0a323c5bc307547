//! A provision that attacks its sandbox, one way per `mode` argument. The host's tests upload it
//! and check that each attack becomes a fault of that device alone.
//!
//! | mode | what it does | expected fault |
//! |---|---|---|
//! | `loop` | spins forever | `plugin.timeout` |
//! | `memory` | allocates ever larger blocks (up to 1 GiB) | `plugin.memory` |
//! | `recursion` | recurses without end | `plugin.trap` (stack overflow) |
//! | `declarations` | declares `count` times (default 20 000, twice the default limit) | `plugin.limit` |
//! | `huge-value` | declares one value of `bytes` bytes | `plugin.limit` |
//! | `trap` | panics | `plugin.trap` |
//! | `behave` | declares one refresh, like a real provision | none |
//! | `stamp` | tags the device `seen-<clock>`: a run that reads the clock, which no later session may replay | none |

use roost_plugin_sdk::prelude::*;

struct Hostile;

impl Provision for Hostile {
    fn run(args: &Args) -> Result<()> {
        match args.require("mode")? {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                // Ever larger blocks, kept: the heap grows until the sandbox refuses.
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                for shift in 10..31 {
                    let mut block = Vec::with_capacity(1 << shift);
                    block.push(1u8);
                    blocks.push(std::hint::black_box(block));
                }
                log::info(&format!("allocated {} blocks", std::hint::black_box(blocks.len())));
                Ok(())
            }
            "recursion" => {
                log::info(&format!("depth {}", recurse(std::hint::black_box(0))));
                Ok(())
            }
            "declarations" => {
                let count: u64 = args.parse("count")?.unwrap_or(20_000);
                for i in 0..count {
                    declare(format!("Device.Hostile.{i}.Value")).value(i);
                }
                Ok(())
            }
            "huge-value" => {
                let bytes: usize = args.parse("bytes")?.unwrap_or(8 * 1024 * 1024);
                declare("Device.Hostile.Value").value("x".repeat(bytes));
                Ok(())
            }
            #[allow(clippy::panic)]
            "trap" => panic!("the hostile plugin panicked on purpose"),
            "behave" => {
                declare("Device.DeviceInfo.UpTime").refresh(Duration::from_secs(60));
                Ok(())
            }
            "stamp" => tags::add(&format!("seen-{}", clock::now_ms())),
            other => Err(Error::invalid_argument(format!("unknown mode {other}"))),
        }
    }
}

#[allow(unconditional_recursion)] // the point: it recurses until the sandbox stops it
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    recurse(depth + 1).wrapping_add(frame[(depth % 16) as usize])
}

export_provision!(Hostile);
