//! A TCP balancer for the replicas benchmark: the e2e suite's [`roost_tests::Balancer`], on the
//! address bench.sh gives, until the process is stopped. The one-replica run goes through it
//! too, so both runs pay for the same extra hop.

use std::net::SocketAddr;

use anyhow::Result;

pub async fn serve(listen: SocketAddr, backends: Vec<SocketAddr>) -> Result<()> {
    let _balancer = roost_tests::Balancer::bind(listen, &backends).await?;
    std::future::pending().await
}
