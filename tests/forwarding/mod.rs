//! Test datapaths that wrap another one and change a little: the `Datapath` methods they
//! pass on unchanged, written once.

/// Inside `impl Datapath for W`, where `W` has a field `inner` holding a datapath: `mtu`,
/// `local_ip_for`, `bind` and `unbind`, passed on to it.
#[macro_export]
macro_rules! pass_on_addresses {
    () => {
        fn mtu(&self, remote: std::net::IpAddr) -> usize {
            self.inner.mtu(remote)
        }
        fn local_ip_for(&self, remote: std::net::IpAddr) -> std::io::Result<std::net::IpAddr> {
            self.inner.local_ip_for(remote)
        }
        fn bind(
            &self,
            local: std::net::SocketAddr,
            kind: rawtcp::datapath::BindKind,
        ) -> std::io::Result<std::net::SocketAddr> {
            self.inner.bind(local, kind)
        }
        fn unbind(&self, local: std::net::SocketAddr) {
            self.inner.unbind(local)
        }
    };
}
