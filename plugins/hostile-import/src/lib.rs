//! Imports `evil:plugin/socket`, which no Roost world offers.

wit_bindgen::generate!({ world: "provision-with-sockets", path: "wit" });

struct SocketUser;

impl Guest for SocketUser {
    fn run(_args: Vec<(String, String)>) -> Result<(), String> {
        if evil::plugin::socket::connect("198.51.100.7:25") { Ok(()) } else { Err("no socket".into()) }
    }
}

export!(SocketUser);
