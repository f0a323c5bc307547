//! A TCP balancer for the replicas benchmark: each connection goes to the next backend in turn,
//! as a Kubernetes Service or HAProxy in TCP mode sends CPE connections to Roost replicas. The
//! one-replica run goes through it too, so both runs pay for the same extra hop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, ensure};
use tokio::net::{TcpListener, TcpStream};

pub async fn serve(listen: SocketAddr, backends: Vec<SocketAddr>) -> Result<()> {
    ensure!(!backends.is_empty(), "no backend to balance to (--to)");
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let backends = Arc::new(backends);
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors, say: a pause rather than a loop that spins on the error.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let backends = backends.clone();
        let turn = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // A backend that refuses passes the connection to the next one.
            for i in 0..backends.len() {
                let backend = backends[(turn + i) % backends.len()];
                if let Ok(mut upstream) = TcpStream::connect(backend).await {
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    return;
                }
            }
        });
    }
}
