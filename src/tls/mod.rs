//! TLS on the io_uring data plane: rustls' unbuffered API between the reactor's sockets and
//! the sessions. Sans-IO: [`TlsStream`] turns received ciphertext into plaintext and
//! plaintext into ciphertext, in buffers its caller owns, so it is tested and fuzzed with
//! no socket. [`config`] loads and reloads certificates; [`kernel_tls`] says whether the
//! kernel could take the records over (kTLS).
//!
//! **Architecture Invariant:** this module knows nothing of sockets, rings, sessions or
//! WebSockets; the reactor drives it.

pub mod config;
pub mod records;
pub mod stream;

pub use config::{
    client_config, client_configs, server_config, CertStore, ClientConfigs, TlsFiles, Trust,
};
pub use records::Records;
pub use stream::{Endpoint, TlsError, TlsStream};

/// Whether the kernel offers TLS record offload (the `tls` TCP ULP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelTls {
    /// The `tls` ULP can be attached to established sockets.
    Available,
    /// It cannot, and why.
    Unavailable(String),
}

/// Probe for kernel TLS (a socket option on a fresh socket; no connection is made).
pub fn kernel_tls() -> KernelTls {
    match crate::io::sys::tcp_ulp_probe("tls") {
        Ok(()) => KernelTls::Available,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => KernelTls::Available,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            KernelTls::Unavailable("the kernel has no `tls` ULP (CONFIG_TLS, module tls)".into())
        }
        Err(e) => KernelTls::Unavailable(format!("probing the `tls` ULP failed: {e}")),
    }
}

#[cfg(test)]
mod tests;
