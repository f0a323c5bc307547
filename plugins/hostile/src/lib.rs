//! A provision that attacks its sandbox, one way per `mode` argument. The host's tests upload it
//! and check that each attack becomes a fault of that device alone.
//!
//! | mode | what it does | expected fault |
//! |---|---|---|
//! | `loop` | spins forever | `plugin.cpu_time` |
//! | `memory` | allocates ever larger blocks (up to 1 GiB) | `plugin.memory` |
//! | `recursion` | recurses without end | `plugin.trap` (stack overflow) |
//! | `declarations` | declares `count` times (default 20 000, twice the default limit) | `plugin.limit` |
//! | `huge-value` | declares one value of `bytes` bytes | `plugin.limit` |
//! | `huge-log` | logs one line of `bytes` bytes | none; the line is dropped, and counted |
//! | `trap` | panics | `plugin.trap` |
//! | `behave` | declares one refresh, like a real provision | none |
//! | `stamp` | tags the device `seen-<clock>`: a run that reads the clock, which no later session may replay | none |
//! | `spin` | `iterations` rounds of arithmetic (default 1 000 000): CPU work of a known size, as a provision with real work does | none while the work fits the CPU budget, however loaded the machine |
//! | `log` | logs `count` lines (default 3), `line <i> at <clock>`, at levels debug, info, warn, error in turn; reads the clock, so it runs in every session | none; past the run's limit, a line saying how many were dropped |
//! | `reads` | reads `count` subtrees (default 10) the device view has not loaded: one store load each | `plugin.timeout` when the store is slow past the wall-clock backstop |
//! | `radio` | calls `radio::cellular` and returns its error, if any: how the host answers a provision whose device's adapter has no `radio` | the adapter's answer |

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
            "huge-log" => {
                let bytes: usize = args.parse("bytes")?.unwrap_or(8 * 1024 * 1024);
                log::info(&"x".repeat(bytes));
                Ok(())
            }
            #[allow(clippy::panic)]
            "trap" => panic!("the hostile plugin panicked on purpose"),
            "behave" => {
                declare("Device.DeviceInfo.UpTime").refresh(Duration::from_secs(60));
                Ok(())
            }
            "stamp" => tags::add(&format!("seen-{}", clock::now_ms())),
            "spin" => {
                let iterations: u64 = args.parse("iterations")?.unwrap_or(1_000_000);
                let mut x: u64 = 1;
                for i in 0..iterations {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
                }
                std::hint::black_box(x);
                Ok(())
            }
            "log" => {
                let count: u64 = args.parse("count")?.unwrap_or(3);
                let now = clock::now_ms();
                for i in 0..count {
                    let message = format!("line {i} at {now}");
                    match i % 4 {
                        0 => log::debug(&message),
                        1 => log::info(&message),
                        2 => log::warn(&message),
                        _ => log::error(&message),
                    }
                }
                Ok(())
            }
            "reads" => {
                let count: u64 = args.parse("count")?.unwrap_or(10);
                for i in 0..count {
                    device::get(&format!("Device.Hostile.{i}.Value"))?;
                }
                Ok(())
            }
            "radio" => radio::cellular(Duration::ZERO).map(|_| ()),
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
