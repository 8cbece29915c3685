//! The TUN datapath: the stack owns an address behind a TUN device, and the host's kernel
//! routes to it.
//!
//! A TUN device is a virtual network interface whose "wire" is a file descriptor: every IP
//! packet the kernel routes out of the interface can be read from the descriptor, and every
//! packet written to the descriptor reaches the kernel as if it had arrived on the interface.
//! [`TunDatapath`] opens one through `/dev/net/tun` (`IFF_TUN | IFF_NO_PI`: bare IPv4 and IPv6
//! packets, no framing) and puts the stack on the far side of it: the stack answers for its
//! own address ([`TunConfig::addr`], `10.77.0.2` by default), which the kernel does not own,
//! and the kernel reaches that address through the device. Applications on the host connect
//! to the stack (or accept its connections) with their ordinary kernel sockets.
//!
//! # What it changes on the host
//!
//! While a [`TunDatapath`] lives, the host has:
//! - a new network interface, named [`TunConfig::name`] (`rawtcp0` by default), up, with the
//!   configured MTU;
//! - the host address [`TunConfig::host_addr`] with the prefix (`10.77.0.1/24` by default)
//!   assigned to that interface, and so a connected route for the prefix
//!   (`10.77.0.0/24 dev rawtcp0`) through which the kernel reaches the stack's address;
//! - with [`TunConfig::addr6`], the same for IPv6 (an address on the interface and a connected
//!   route for its prefix).
//!
//! Nothing else: no forwarding, no NAT, no firewall rule, and the stack's own address is never
//! assigned to the kernel. Dropping the datapath closes the descriptor, and the kernel then
//! removes the interface with its addresses and routes. (A *persistent* TUN device of the same
//! name made beforehand, with `ip tuntap add`, is attached to instead of created, and is left
//! in place, with the addresses given to it, when the datapath goes.)
//!
//! # Privilege
//!
//! Creating a TUN device needs `CAP_NET_ADMIN` (running as root gives it) and the kernel's TUN
//! driver, reached through `/dev/net/tun`. Without either, [`TunDatapath::new`] fails at once
//! with an error that names what is missing; it never waits and never panics. No external
//! tool is run: the device is created and addressed with ioctls.
//!
//! # Environment
//!
//! With `RAWTCP_DATAPATH=tun`, [`TunConfig::from_env`] reads:
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `RAWTCP_TUN_NAME` | the interface name (at most 15 bytes; `%d` lets the kernel number it) | `rawtcp0` |
//! | `RAWTCP_TUN_ADDR` | the stack's IPv4 address and prefix, e.g. `10.77.0.2/24` | `10.77.0.2/24` |
//! | `RAWTCP_TUN_HOST_ADDR` | the host side's IPv4 address on the device | the first free address of the prefix (`10.77.0.1`) |
//! | `RAWTCP_TUN_MTU` | the interface MTU, 68 to 65535 (1280 or more with IPv6) | `1500` |
//! | `RAWTCP_TUN_ADDR6` | the stack's IPv6 address and prefix, e.g. `fd77::2/64` | none: no IPv6 |
//! | `RAWTCP_TUN_HOST_ADDR6` | the host side's IPv6 address on the device | the first free address of the prefix |
//!
//! A variable that is unset or empty keeps its default; a bad value is an `InvalidInput` error
//! naming the variable.
//!
//! ```no_run
//! use rawtcp::datapath::tun::{TunConfig, TunDatapath};
//!
//! # async fn demo() -> std::io::Result<()> {
//! // Inside a tokio runtime, as root:
//! let datapath = TunDatapath::new(TunConfig::from_env()?)?;
//! // The host now reaches the stack at 10.77.0.2 through `rawtcp0`; hand the datapath to a
//! // stack (`Stack::builder().datapath(datapath)`) and listen or connect there.
//! # drop(datapath);
//! # Ok(()) }
//! ```

use super::{Batch, BindKind, Datapath};
use crate::wire::view::PacketView;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use tun_rs::{AsyncDevice, DeviceBuilder};

/// The device node through which TUN devices are made.
const TUN_PATH: &str = "/dev/net/tun";
/// The first port handed out for port 0 (IANA dynamic range, RFC 6335).
const EPHEMERAL_FIRST: u16 = 49152;
/// How many ephemeral ports there are (49152..=65535).
const EPHEMERAL_COUNT: u16 = 16384;
/// The smallest MTU of an IPv4 link (RFC 791).
const MIN_MTU_V4: u16 = 68;
/// The smallest MTU of an IPv6 link (RFC 8200 §5).
const MIN_MTU_V6: u16 = 1280;
/// Interface names are at most this many bytes (`IFNAMSIZ` less the NUL).
const MAX_NAME_LEN: usize = 15;
/// The bit of `CAP_NET_ADMIN` in the capability sets of `/proc/self/status`.
const CAP_NET_ADMIN_BIT: u32 = 12;

// Linux errno values met while creating the device.
const EPERM: i32 = 1;
const ENXIO: i32 = 6;
const EACCES: i32 = 13;
const EBUSY: i32 = 16;
const ENODEV: i32 = 19;
const EINVAL: i32 = 22;
const EBADFD: i32 = 77;
const EAFNOSUPPORT: i32 = 97;

const VAR_NAME: &str = "RAWTCP_TUN_NAME";
const VAR_ADDR: &str = "RAWTCP_TUN_ADDR";
const VAR_HOST_ADDR: &str = "RAWTCP_TUN_HOST_ADDR";
const VAR_MTU: &str = "RAWTCP_TUN_MTU";
const VAR_ADDR6: &str = "RAWTCP_TUN_ADDR6";
const VAR_HOST_ADDR6: &str = "RAWTCP_TUN_HOST_ADDR6";

/// How a [`TunDatapath`] sets up its device: the interface's name, the stack's addresses and
/// the host's addresses on the device, and the MTU.
///
/// ```
/// use rawtcp::datapath::tun::TunConfig;
/// let config = TunConfig::from_lookup(|var| match var {
///     "RAWTCP_TUN_ADDR" => Some("10.99.0.2/24".to_string()),
///     _ => None,
/// })?;
/// assert_eq!(config.addr.to_string(), "10.99.0.2");
/// assert_eq!(config.host_addr.to_string(), "10.99.0.1");
/// assert_eq!(config.name, "rawtcp0");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// The interface name (default `rawtcp0`): at most 15 bytes, no `/`, `:` or white space.
    /// A `%d` in it asks the kernel for the first free number.
    pub name: String,
    /// The stack's own IPv4 address (default `10.77.0.2`). It is not assigned to the kernel:
    /// the kernel routes it to the device, and the stack answers for it.
    pub addr: Ipv4Addr,
    /// The prefix length of the subnet on the device (default 24), 1 to 31.
    pub prefix: u8,
    /// The host side's IPv4 address on the device (default `10.77.0.1`), in the same subnet
    /// as [`addr`](Self::addr). Assigning it gives the host its connected route to the stack.
    pub host_addr: Ipv4Addr,
    /// The interface MTU (default 1500): the largest IP packet either way.
    pub mtu: u16,
    /// IPv6 as well: the stack's address, the host side's address and the prefix length
    /// (1 to 127). `None` (the default) for IPv4 only.
    pub addr6: Option<(Ipv6Addr, Ipv6Addr, u8)>,
}

impl Default for TunConfig {
    fn default() -> TunConfig {
        TunConfig {
            name: "rawtcp0".to_string(),
            addr: Ipv4Addr::new(10, 77, 0, 2),
            prefix: 24,
            host_addr: Ipv4Addr::new(10, 77, 0, 1),
            mtu: 1500,
            addr6: None,
        }
    }
}

/// What configuration errors call each setting: the struct's fields, or the environment
/// variables they were read from.
struct Labels {
    name: &'static str,
    addr: &'static str,
    host: &'static str,
    mtu: &'static str,
    addr6: &'static str,
    host6: &'static str,
}

const FIELD_LABELS: Labels = Labels {
    name: "TunConfig::name",
    addr: "TunConfig::addr/prefix",
    host: "TunConfig::host_addr",
    mtu: "TunConfig::mtu",
    addr6: "TunConfig::addr6 (stack address/prefix)",
    host6: "TunConfig::addr6 (host address)",
};

const VAR_LABELS: Labels = Labels {
    name: VAR_NAME,
    addr: VAR_ADDR,
    host: VAR_HOST_ADDR,
    mtu: VAR_MTU,
    addr6: VAR_ADDR6,
    host6: VAR_HOST_ADDR6,
};

impl TunConfig {
    /// The configuration given by the environment (see the [module documentation](self)):
    /// the defaults, overridden by every `RAWTCP_TUN_*` variable that is set and not empty.
    ///
    /// # Errors
    ///
    /// `InvalidInput`, naming the variable, for a value that does not parse or a combination
    /// that cannot work (a host address outside the stack's subnet, an MTU too small).
    pub fn from_env() -> io::Result<TunConfig> {
        TunConfig::from_lookup(|var| match std::env::var(var) {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(v)) => Some(v.to_string_lossy().into_owned()),
        })
    }

    /// Like [`from_env`](Self::from_env), with the variables' values given by `lookup`
    /// (`None` for an unset variable) instead of the process environment.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> io::Result<TunConfig> {
        let get = |var: &str| {
            lookup(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut config = TunConfig::default();
        if let Some(name) = get(VAR_NAME) {
            config.name = name;
        }
        let addr_given = match get(VAR_ADDR) {
            Some(v) => {
                let (addr, prefix) = parse_v4_prefix(VAR_ADDR, &v)?;
                config.addr = addr;
                if let Some(p) = prefix {
                    config.prefix = p;
                }
                true
            }
            None => false,
        };
        match get(VAR_HOST_ADDR) {
            Some(v) => config.host_addr = parse_plain(VAR_HOST_ADDR, &v)?,
            None if addr_given => {
                if let Some(host) = default_host_v4(config.addr, config.prefix) {
                    config.host_addr = host;
                }
            }
            None => {}
        }
        if let Some(v) = get(VAR_MTU) {
            config.mtu = v.parse().map_err(|_| {
                env_error(
                    VAR_MTU,
                    &v,
                    format!("not an MTU (a number from {MIN_MTU_V4} to 65535)"),
                )
            })?;
        }
        config.addr6 = match (get(VAR_ADDR6), get(VAR_HOST_ADDR6)) {
            (None, None) => None,
            (None, Some(v)) => {
                return Err(env_error(
                    VAR_HOST_ADDR6,
                    &v,
                    format!("set, but {VAR_ADDR6} (the stack's IPv6 address) is not"),
                ))
            }
            (Some(v), host) => {
                let (addr, prefix) = parse_v6_prefix(VAR_ADDR6, &v)?;
                let prefix = prefix.unwrap_or(64);
                let host = match host {
                    Some(h) => parse_plain(VAR_HOST_ADDR6, &h)?,
                    None => default_host_v6(addr, prefix).unwrap_or(Ipv6Addr::UNSPECIFIED),
                };
                Some((addr, host, prefix))
            }
        };
        config.check(&VAR_LABELS)?;
        Ok(config)
    }

    /// Checks that the configuration can work: a valid interface name, both IPv4 addresses
    /// usable and distinct in one subnet of 1 to 31 bits, the same for IPv6 if set, and an
    /// MTU that every configured family accepts. [`TunDatapath::new`] checks this first.
    ///
    /// # Errors
    ///
    /// `InvalidInput`, naming the field at fault.
    pub fn validate(&self) -> io::Result<()> {
        self.check(&FIELD_LABELS)
    }

    fn check(&self, labels: &Labels) -> io::Result<()> {
        let fail = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if !valid_ifname(&self.name) {
            return fail(format!(
                "{}={:?}: not an interface name (1 to {MAX_NAME_LEN} bytes, no '/', ':' or \
                 white space)",
                labels.name, self.name
            ));
        }
        let (addr, host, prefix) = (self.addr, self.host_addr, self.prefix);
        if !(1..=31).contains(&prefix) {
            return fail(format!(
                "{}={addr}/{prefix}: the prefix must be 1 to 31 (the stack's and the host's \
                 addresses share the subnet)",
                labels.addr
            ));
        }
        for (label, a) in [(labels.addr, addr), (labels.host, host)] {
            if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() {
                return fail(format!(
                    "{label}={a}: an unspecified, loopback, multicast or broadcast address \
                     cannot be used on the device"
                ));
            }
        }
        if addr == host {
            return fail(format!(
                "{}={addr} and {}={host}: the stack and the host need different addresses",
                labels.addr, labels.host
            ));
        }
        let mask = prefix_mask_v4(prefix);
        let net = u32::from(addr) & mask;
        if u32::from(host) & mask != net {
            return fail(format!(
                "{}={host} is outside the stack's subnet {}/{prefix} ({}={addr}/{prefix})",
                labels.host,
                Ipv4Addr::from(net),
                labels.addr
            ));
        }
        if prefix <= 30 {
            for (label, a) in [(labels.addr, addr), (labels.host, host)] {
                let bits = u32::from(a);
                if bits == net || bits == net | !mask {
                    return fail(format!(
                        "{label}={a} is the network or broadcast address of {}/{prefix}",
                        Ipv4Addr::from(net)
                    ));
                }
            }
        }
        if self.mtu < MIN_MTU_V4 {
            return fail(format!(
                "{}={}: below {MIN_MTU_V4}, the smallest IPv4 MTU",
                labels.mtu, self.mtu
            ));
        }
        if let Some((addr6, host6, prefix6)) = self.addr6 {
            if !(1..=127).contains(&prefix6) {
                return fail(format!(
                    "{}={addr6}/{prefix6}: the prefix must be 1 to 127",
                    labels.addr6
                ));
            }
            for (label, a) in [(labels.addr6, addr6), (labels.host6, host6)] {
                if a.is_unspecified() || a.is_loopback() || a.is_multicast() {
                    return fail(format!(
                        "{label}={a}: an unspecified, loopback or multicast address cannot be \
                         used on the device"
                    ));
                }
            }
            if addr6 == host6 {
                return fail(format!(
                    "{}={addr6} and {}={host6}: the stack and the host need different addresses",
                    labels.addr6, labels.host6
                ));
            }
            let mask6 = prefix_mask_v6(prefix6);
            let net6 = u128::from(addr6) & mask6;
            if u128::from(host6) & mask6 != net6 {
                return fail(format!(
                    "{}={host6} is outside the stack's subnet {}/{prefix6} ({}={addr6}/{prefix6})",
                    labels.host6,
                    Ipv6Addr::from(net6),
                    labels.addr6
                ));
            }
            if self.mtu < MIN_MTU_V6 {
                return fail(format!(
                    "{}={}: below {MIN_MTU_V6}, the smallest IPv6 MTU (IPv6 is set by {})",
                    labels.mtu, self.mtu, labels.addr6
                ));
            }
        }
        Ok(())
    }
}

/// Whether the kernel accepts `name` as an interface name (`dev_valid_name`).
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
}

fn env_error(var: &str, value: &str, why: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{var}={value:?}: {why}"),
    )
}

/// Splits `addr[/prefix]`.
fn split_prefix<'a>(var: &str, value: &'a str, max: u8) -> io::Result<(&'a str, Option<u8>)> {
    match value.split_once('/') {
        None => Ok((value, None)),
        Some((addr, prefix)) => match prefix.trim().parse::<u8>() {
            Ok(p) if p <= max => Ok((addr.trim(), Some(p))),
            _ => Err(env_error(
                var,
                value,
                format!("the prefix length after '/' must be a number from 0 to {max}"),
            )),
        },
    }
}

fn parse_v4_prefix(var: &str, value: &str) -> io::Result<(Ipv4Addr, Option<u8>)> {
    if value.contains(':') {
        return Err(env_error(
            var,
            value,
            format!("an IPv4 address is expected here; IPv6 goes in {VAR_ADDR6}"),
        ));
    }
    let (addr, prefix) = split_prefix(var, value, 32)?;
    let addr = addr.parse().map_err(|_| {
        env_error(
            var,
            value,
            "not an IPv4 address with an optional prefix, like 10.77.0.2/24",
        )
    })?;
    Ok((addr, prefix))
}

fn parse_v6_prefix(var: &str, value: &str) -> io::Result<(Ipv6Addr, Option<u8>)> {
    let (addr, prefix) = split_prefix(var, value, 128)?;
    let addr = addr.parse().map_err(|_| {
        env_error(
            var,
            value,
            "not an IPv6 address with an optional prefix, like fd77::2/64",
        )
    })?;
    Ok((addr, prefix))
}

/// An address alone (the prefix comes from the stack's address).
fn parse_plain<T: std::str::FromStr>(var: &str, value: &str) -> io::Result<T> {
    if value.contains('/') {
        return Err(env_error(
            var,
            value,
            "an address without a prefix is expected (the prefix is the stack's)",
        ));
    }
    value
        .parse()
        .map_err(|_| env_error(var, value, "not an address of the right family"))
}

fn prefix_mask_v4(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn prefix_mask_v6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// The host address used when only the stack's is given: the first address of the prefix, or
/// the second if the stack has the first (the other one of a /31).
fn default_host_v4(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    let bits = u32::from(addr);
    match prefix {
        31 => Some(Ipv4Addr::from(bits ^ 1)),
        0..=30 => {
            let net = bits & prefix_mask_v4(prefix);
            let first = net.wrapping_add(1);
            Some(Ipv4Addr::from(if first == bits {
                net.wrapping_add(2)
            } else {
                first
            }))
        }
        _ => None,
    }
}

/// As [`default_host_v4`], for IPv6.
fn default_host_v6(addr: Ipv6Addr, prefix: u8) -> Option<Ipv6Addr> {
    let bits = u128::from(addr);
    match prefix {
        127 => Some(Ipv6Addr::from(bits ^ 1)),
        0..=126 => {
            let net = bits & prefix_mask_v6(prefix);
            let first = net.wrapping_add(1);
            Some(Ipv6Addr::from(if first == bits {
                net.wrapping_add(2)
            } else {
                first
            }))
        }
        _ => None,
    }
}

/// Counters of a [`TunDatapath`] since it was created.
///
/// Every packet read from the device is counted once: in `packets_in` (handed to the stack),
/// `not_for_us` or `dropped_in`. Every packet given to `send` is counted once: in
/// `packets_out` or `dropped_out`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunStats {
    /// Packets read from the device and handed to the stack.
    pub packets_in: u64,
    /// Bytes of those packets.
    pub bytes_in: u64,
    /// Packets written to the device.
    pub packets_out: u64,
    /// Bytes of those packets.
    pub bytes_out: u64,
    /// Packets read from the device whose destination is none of the stack's addresses
    /// (the kernel's own IPv6 router solicitations, traffic to other addresses of the prefix).
    pub not_for_us: u64,
    /// Packets read from the device and dropped: not IPv4 or IPv6, too short for their
    /// header, or larger than the receiving batch's slots.
    pub dropped_in: u64,
    /// Packets given to `send` and dropped: not IPv4 or IPv6, refused by the kernel, or
    /// finding the device's queue full.
    pub dropped_out: u64,
}

#[derive(Default)]
struct Counters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    not_for_us: AtomicU64,
    dropped_in: AtomicU64,
    dropped_out: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A [`Datapath`] over a TUN device that it creates: see the [module documentation](self)
/// for what it changes on the host.
///
/// It answers for the stack's addresses ([`TunConfig::addr`] and, if set, the first of
/// [`TunConfig::addr6`]); packets the kernel sends to any other address are dropped and
/// counted. Ports are claimed in a table of its own, as the kernel would: an exact address
/// and the unspecified address of the same family conflict on the same port, and port 0 picks
/// a free port from 49152 to 65535.
///
/// Dropping it removes the device (see the module documentation).
pub struct TunDatapath {
    /// The device, registered with tokio: packets are read here.
    reader: AsyncDevice,
    /// The same open device, duplicated: packets are written here directly. A TUN device is
    /// always writable, and tokio's view of write readiness (unknown until the runtime's
    /// next turn after registration) must not drop the first packets.
    writer: File,
    device: String,
    config: TunConfig,
    ports: Mutex<Ports>,
    counters: Counters,
}

impl fmt::Debug for TunDatapath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunDatapath")
            .field("device", &self.device)
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl TunDatapath {
    /// Creates the TUN device [`config.name`](TunConfig::name) (or attaches to a persistent
    /// one of that name), assigns it the host's address with the prefix (and the IPv6 one if
    /// set), sets its MTU and brings it up.
    ///
    /// Must be called inside a tokio runtime with IO enabled, which then drives the device.
    ///
    /// # Errors
    ///
    /// At once, and naming what is missing: `InvalidInput` for a configuration that
    /// [`validate`](TunConfig::validate) rejects; `Other` outside a tokio runtime; `NotFound`
    /// without `/dev/net/tun` or a TUN driver; `PermissionDenied` without `CAP_NET_ADMIN`;
    /// `ResourceBusy` when another process holds a device of that name; and the kernel's
    /// error, with what was being done, for anything else.
    pub fn new(config: TunConfig) -> io::Result<TunDatapath> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "rawtcp tun datapath: TunDatapath::new must be called inside a tokio runtime \
                 (with IO enabled), which drives the device",
            ));
        }
        preflight(&config.name, std::path::Path::new(TUN_PATH), cap_eff())?;
        let device = DeviceBuilder::new()
            .name(config.name.clone())
            .ipv4(config.host_addr, config.prefix, None)
            .inherit_enable_state()
            .build_sync()
            .map_err(|e| creation_error(e, &config))?;
        // The kernel's name for it differs from the one asked for when that holds a `%d`.
        let name = device.name().unwrap_or_else(|_| config.name.clone());
        let step = |what: String, ipv6: bool| {
            let name = name.clone();
            move |e: io::Error| {
                let hint = match e.raw_os_error() {
                    Some(EPERM) => " (needs CAP_NET_ADMIN)",
                    Some(EACCES) if ipv6 => {
                        " (IPv6 is disabled for new interfaces: net.ipv6.conf.default.disable_ipv6)"
                    }
                    Some(EAFNOSUPPORT) if ipv6 => " (IPv6 is disabled on this host)",
                    _ => "",
                };
                io::Error::new(
                    e.kind(),
                    format!("rawtcp tun datapath: {what} on TUN device {name}{hint}: {e}"),
                )
            }
        };
        device
            .set_mtu(config.mtu)
            .map_err(step(format!("setting MTU {}", config.mtu), false))?;
        if let Some((_, host6, prefix6)) = config.addr6 {
            device
                .add_address_v6(host6, prefix6)
                .map_err(step(format!("assigning {host6}/{prefix6}"), true))?;
        }
        device
            .enabled(true)
            .map_err(step("bringing the interface up".to_string(), false))?;
        let writer = device
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .map_err(step("duplicating the descriptor".to_string(), false))?;
        // Makes the descriptor (shared with `writer`) non-blocking and registers it.
        let reader = AsyncDevice::new(device).map_err(step(
            "registering the descriptor with tokio".to_string(),
            false,
        ))?;
        Ok(TunDatapath {
            reader,
            writer,
            device: name,
            ports: Mutex::new(Ports::new(random_offset())),
            config,
            counters: Counters::default(),
        })
    }

    /// The configuration the device was set up with.
    pub fn config(&self) -> &TunConfig {
        &self.config
    }

    /// The interface's name as the kernel has it (the configured one, with any `%d` filled in).
    pub fn device_name(&self) -> &str {
        &self.device
    }

    /// The counters so far.
    pub fn stats(&self) -> TunStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TunStats {
            packets_in: get(&c.packets_in),
            bytes_in: get(&c.bytes_in),
            packets_out: get(&c.packets_out),
            bytes_out: get(&c.bytes_out),
            not_for_us: get(&c.not_for_us),
            dropped_in: get(&c.dropped_in),
            dropped_out: get(&c.dropped_out),
        }
    }

    fn addr6(&self) -> Option<Ipv6Addr> {
        self.config.addr6.map(|(a, _, _)| a)
    }

    fn is_own(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => a == self.config.addr,
            IpAddr::V6(a) => Some(a) == self.addr6(),
        }
    }

    fn lock_ports(&self) -> MutexGuard<'_, Ports> {
        // Nothing under the lock can panic halfway through a change.
        self.ports.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io_error(&self, what: &str, e: io::Error) -> io::Error {
        // A descriptor whose interface was deleted (`ip link del`) answers EBADFD.
        let hint = if e.raw_os_error() == Some(EBADFD) {
            "; the interface was deleted"
        } else {
            ""
        };
        io::Error::new(
            e.kind(),
            format!(
                "rawtcp tun datapath: {what} (TUN device {}{hint}): {e}",
                self.device
            ),
        )
    }
}

impl Datapath for TunDatapath {
    fn name(&self) -> &'static str {
        "tun"
    }

    fn mtu(&self, _remote: IpAddr) -> usize {
        usize::from(self.config.mtu)
    }

    fn local_ip_for(&self, remote: IpAddr) -> io::Result<IpAddr> {
        match remote {
            IpAddr::V4(_) => Ok(IpAddr::V4(self.config.addr)),
            IpAddr::V6(_) => self.addr6().map(IpAddr::V6).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!(
                        "the tun datapath has no IPv6 address to reach {remote} from \
                         (set {VAR_ADDR6})"
                    ),
                )
            }),
        }
    }

    /// The stack sits behind its own device and nothing else: binding to that device is
    /// what every connection does anyway; another interface cannot reach the stack.
    fn local_ip_via(&self, device: &[u8], remote: IpAddr) -> io::Result<IpAddr> {
        if device != self.device.as_bytes() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "rawtcp: the tun datapath sends through {} only, not {}",
                    self.device,
                    String::from_utf8_lossy(device)
                ),
            ));
        }
        self.local_ip_for(remote)
    }

    fn bind(&self, local: SocketAddr, _kind: BindKind) -> io::Result<SocketAddr> {
        let ip = local.ip();
        if !(ip.is_unspecified() || self.is_own(ip)) {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "{ip} is not an address of the tun datapath (it has {}{})",
                    self.config.addr,
                    self.addr6()
                        .map(|a| format!(" and {a}"))
                        .unwrap_or_default()
                ),
            ));
        }
        self.lock_ports().claim(local)
    }

    fn unbind(&self, local: SocketAddr) {
        self.lock_ports().release(local);
    }

    fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<io::Result<()>> {
        let start = batch.len();
        // Packets not for the stack do not end a call; this bounds how many one call reads.
        let budget = batch.capacity().saturating_mul(4).max(64);
        let addr6 = self.addr6();
        for _ in 0..budget {
            let Some(slot) = batch.next_slot() else {
                return Poll::Ready(Ok(()));
            };
            // Reads one packet, or registers the waker (for readability, and for the error
            // the kernel reports once the interface is deleted).
            let n = match self.reader.poll_recv(cx, &mut *slot) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => {
                    if batch.len() > start {
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Ready(Err(self.io_error("reading a packet", e)));
                }
                Poll::Pending => {
                    if batch.len() > start {
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Pending;
                }
            };
            // The kernel reports a packet's whole length even when the slot held less.
            let verdict = match slot.get(..n) {
                Some(packet) => classify(packet, self.config.addr, addr6),
                None => Verdict::Malformed,
            };
            match verdict {
                Verdict::Deliver => {
                    batch.commit(n);
                    bump(&self.counters.packets_in, 1);
                    bump(&self.counters.bytes_in, n as u64);
                }
                Verdict::NotForUs => bump(&self.counters.not_for_us, 1),
                Verdict::Malformed => bump(&self.counters.dropped_in, 1),
            }
        }
        if batch.len() > start {
            return Poll::Ready(Ok(()));
        }
        // Only packets for others so far, and more waiting: let other tasks run, then come
        // back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn send(&self, batch: &Batch) -> io::Result<()> {
        let mut failure = None;
        for packet in batch.iter() {
            if !plausible(packet) {
                bump(&self.counters.dropped_out, 1);
                continue;
            }
            // One write is one packet (the descriptor is non-blocking).
            let mut written = (&self.writer).write(packet);
            if matches!(&written, Err(e) if e.kind() == io::ErrorKind::Interrupted) {
                written = (&self.writer).write(packet);
            }
            match written {
                Ok(n) if n == packet.len() => {
                    bump(&self.counters.packets_out, 1);
                    bump(&self.counters.bytes_out, n as u64);
                }
                Ok(_) => bump(&self.counters.dropped_out, 1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    bump(&self.counters.dropped_out, 1);
                }
                Err(e) => {
                    bump(&self.counters.dropped_out, 1);
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            None => Ok(()),
            Some(e) => Err(self.io_error("writing a packet", e)),
        }
    }
}

/// Whether `packet` may be an IP packet: a version the device carries and room for its header.
/// The kernel drops anything else, so it is not written.
fn plausible(packet: &[u8]) -> bool {
    PacketView::new(packet).is_ok()
}

/// What becomes of a packet read from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// For one of the stack's addresses: handed to the stack.
    Deliver,
    /// For another address: dropped and counted.
    NotForUs,
    /// Not an IP packet this datapath can read the destination of.
    Malformed,
}

/// Reads the destination straight from the IP header; the stack parses the rest.
fn classify(packet: &[u8], addr: Ipv4Addr, addr6: Option<Ipv6Addr>) -> Verdict {
    let Ok(view) = PacketView::new(packet) else {
        return Verdict::Malformed;
    };
    let ours = match view.dst() {
        IpAddr::V4(a) => a == addr,
        IpAddr::V6(a) => Some(a) == addr6,
    };
    if ours {
        Verdict::Deliver
    } else {
        Verdict::NotForUs
    }
}

/// The claimed ports: which addresses hold each port, as the kernel's bind rules see them.
struct Ports {
    bound: HashMap<u16, Vec<IpAddr>>,
    /// Where the search for a free ephemeral port starts.
    next: u16,
}

impl Ports {
    fn new(offset: u16) -> Ports {
        Ports {
            bound: HashMap::new(),
            next: EPHEMERAL_FIRST + offset % EPHEMERAL_COUNT,
        }
    }

    /// Whether `ip:port` clashes with a claim: same family, and the same address or either
    /// unspecified.
    fn conflicts(&self, ip: IpAddr, port: u16) -> bool {
        self.bound.get(&port).is_some_and(|ips| {
            ips.iter().any(|&b| {
                b.is_ipv4() == ip.is_ipv4()
                    && (b == ip || b.is_unspecified() || ip.is_unspecified())
            })
        })
    }

    fn claim(&mut self, local: SocketAddr) -> io::Result<SocketAddr> {
        let ip = local.ip();
        if local.port() != 0 {
            if self.conflicts(ip, local.port()) {
                return Err(in_use(local));
            }
            self.bound.entry(local.port()).or_default().push(ip);
            return Ok(local);
        }
        for _ in 0..EPHEMERAL_COUNT {
            let port = self.next;
            self.next = port.checked_add(1).unwrap_or(EPHEMERAL_FIRST);
            if !self.conflicts(ip, port) {
                self.bound.entry(port).or_default().push(ip);
                return Ok(SocketAddr::new(ip, port));
            }
        }
        Err(in_use(local))
    }

    fn release(&mut self, local: SocketAddr) {
        if let Some(ips) = self.bound.get_mut(&local.port()) {
            if let Some(i) = ips.iter().position(|&ip| ip == local.ip()) {
                ips.swap_remove(i);
            }
            if ips.is_empty() {
                self.bound.remove(&local.port());
            }
        }
    }
}

fn in_use(local: SocketAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("{local} is already claimed on the tun datapath"),
    )
}

/// A random start for the ephemeral port search (RFC 6056 §3.3.1 in spirit).
fn random_offset() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    (h.finish() % u64::from(EPHEMERAL_COUNT)) as u16
}

/// The effective capability set of this process (`CapEff` in `/proc/self/status`), if it can
/// be read.
fn cap_eff() -> Option<u64> {
    parse_cap_eff(&std::fs::read_to_string("/proc/self/status").ok()?)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// The checks made before touching the kernel, so that what is missing is named precisely:
/// the device node (whose absence the TUN library would otherwise repair with `mknod`) and
/// `CAP_NET_ADMIN` (when the capability set can be read).
fn preflight(name: &str, tun_path: &std::path::Path, caps: Option<u64>) -> io::Result<()> {
    match std::fs::metadata(tun_path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "rawtcp tun datapath: {} does not exist: the kernel's TUN driver is missing \
                     (load it with `modprobe tun`; in a container, pass the device in, e.g. \
                     `--device /dev/net/tun`)",
                    tun_path.display()
                ),
            ))
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("rawtcp tun datapath: {}: {e}", tun_path.display()),
            ))
        }
    }
    if let Some(caps) = caps {
        if caps & (1 << CAP_NET_ADMIN_BIT) == 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "rawtcp tun datapath: opening {} and creating TUN device {name} needs \
                     CAP_NET_ADMIN (run as root, or grant the capability: \
                     setcap cap_net_admin+ep <program>)",
                    tun_path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The error of creating the device, saying what it means.
fn creation_error(e: io::Error, config: &TunConfig) -> io::Error {
    let name = &config.name;
    let (kind, msg) = match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::PermissionDenied, _) => (
            io::ErrorKind::PermissionDenied,
            format!(
                "opening {TUN_PATH} and creating TUN device {name} needs CAP_NET_ADMIN (run as \
                 root)"
            ),
        ),
        (_, Some(EBUSY)) => (
            io::ErrorKind::ResourceBusy,
            format!(
                "TUN device {name} is in use by another process (another stack?); pick another \
                 name with {VAR_NAME}"
            ),
        ),
        (io::ErrorKind::NotFound, _) | (_, Some(ENXIO | ENODEV)) => (
            io::ErrorKind::NotFound,
            format!("{TUN_PATH} has no TUN driver behind it (load it with `modprobe tun`)"),
        ),
        (_, Some(EINVAL)) => (
            io::ErrorKind::InvalidInput,
            format!(
                "the kernel refused TUN device {name} with {}/{} (is {name} an interface of \
                 another kind?)",
                config.host_addr, config.prefix
            ),
        ),
        (kind, _) => (
            kind,
            format!(
                "creating TUN device {name} with {}/{}",
                config.host_addr, config.prefix
            ),
        ),
    };
    io::Error::new(kind, format!("rawtcp tun datapath: {msg}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{emit_tcp_packet, parse_tcp_packet, TcpFlags, TcpOptions, TcpRepr};
    use std::path::Path;
    use std::process::{Command, Output};
    use std::time::{Duration, Instant};

    /// Set in a child run of this test binary to say which part of a privileged test to run.
    const ROLE_VAR: &str = "RAWTCP_TUN_TEST_ROLE";

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn config_err(vars: &[(&str, &str)]) -> String {
        let e = TunConfig::from_lookup(lookup(vars)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        e.to_string()
    }

    #[test]
    fn defaults_without_variables() {
        let c = TunConfig::from_lookup(|_| None).unwrap();
        assert_eq!(c, TunConfig::default());
        assert_eq!(c.name, "rawtcp0");
        assert_eq!(c.addr, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(c.prefix, 24);
        assert_eq!(c.host_addr, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(c.mtu, 1500);
        assert_eq!(c.addr6, None);
        c.validate().unwrap();
        // Empty values are unset values.
        let c = TunConfig::from_lookup(lookup(&[(VAR_NAME, " "), (VAR_MTU, "")])).unwrap();
        assert_eq!(c, TunConfig::default());
    }

    #[test]
    fn parses_every_variable() {
        let c = TunConfig::from_lookup(lookup(&[
            (VAR_NAME, "tun7"),
            (VAR_ADDR, " 192.168.50.9/28 "),
            (VAR_HOST_ADDR, "192.168.50.14"),
            (VAR_MTU, "9000"),
            (VAR_ADDR6, "fd00:1::9/120"),
            (VAR_HOST_ADDR6, "fd00:1::1"),
        ]))
        .unwrap();
        assert_eq!(
            c,
            TunConfig {
                name: "tun7".into(),
                addr: Ipv4Addr::new(192, 168, 50, 9),
                prefix: 28,
                host_addr: Ipv4Addr::new(192, 168, 50, 14),
                mtu: 9000,
                addr6: Some((
                    "fd00:1::9".parse().unwrap(),
                    "fd00:1::1".parse().unwrap(),
                    120
                )),
            }
        );
    }

    #[test]
    fn host_addresses_follow_the_stack_address() {
        let c = TunConfig::from_lookup(lookup(&[(VAR_ADDR, "10.9.8.7/16")])).unwrap();
        assert_eq!((c.addr, c.prefix), (Ipv4Addr::new(10, 9, 8, 7), 16));
        assert_eq!(c.host_addr, Ipv4Addr::new(10, 9, 0, 1));
        // The stack has the first address: the host gets the second.
        let c = TunConfig::from_lookup(lookup(&[(VAR_ADDR, "10.9.0.1")])).unwrap();
        assert_eq!((c.prefix, c.host_addr), (24, Ipv4Addr::new(10, 9, 0, 2)));
        let c = TunConfig::from_lookup(lookup(&[(VAR_ADDR, "10.9.0.5/31")])).unwrap();
        assert_eq!(c.host_addr, Ipv4Addr::new(10, 9, 0, 4));
        let c = TunConfig::from_lookup(lookup(&[(VAR_ADDR6, "fd77::2")])).unwrap();
        assert_eq!(
            c.addr6,
            Some(("fd77::2".parse().unwrap(), "fd77::1".parse().unwrap(), 64))
        );
        let c = TunConfig::from_lookup(lookup(&[(VAR_ADDR6, "fd77::1/64")])).unwrap();
        assert_eq!(c.addr6.unwrap().1, "fd77::2".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn bad_values_name_their_variable() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Vars, &[&str])] = &[
            (
                &[(VAR_ADDR, "10.77.0.300/24")],
                &[VAR_ADDR, "not an IPv4 address"],
            ),
            (&[(VAR_ADDR, "fd77::2/64")], &[VAR_ADDR, VAR_ADDR6]),
            (&[(VAR_ADDR, "10.77.0.2/33")], &[VAR_ADDR, "prefix length"]),
            (&[(VAR_ADDR, "10.77.0.2/x")], &[VAR_ADDR, "prefix length"]),
            (&[(VAR_ADDR, "10.77.0.2/32")], &[VAR_ADDR, "1 to 31"]),
            (&[(VAR_ADDR, "10.77.0.2/0")], &[VAR_ADDR, "1 to 31"]),
            (
                &[(VAR_ADDR, "10.77.0.0/24")],
                &[VAR_ADDR, "network or broadcast"],
            ),
            (&[(VAR_ADDR, "127.0.0.2/8")], &[VAR_ADDR, "loopback"]),
            (
                &[(VAR_HOST_ADDR, "10.78.0.1")],
                &[VAR_HOST_ADDR, "outside", VAR_ADDR],
            ),
            (
                &[(VAR_HOST_ADDR, "10.77.0.2")],
                &[VAR_HOST_ADDR, "different"],
            ),
            (
                &[(VAR_HOST_ADDR, "10.77.0.1/24")],
                &[VAR_HOST_ADDR, "without a prefix"],
            ),
            (&[(VAR_HOST_ADDR, "fd77::1")], &[VAR_HOST_ADDR, "family"]),
            (
                &[(VAR_HOST_ADDR, "10.77.0.255")],
                &[VAR_HOST_ADDR, "broadcast"],
            ),
            (&[(VAR_MTU, "big")], &[VAR_MTU, "not an MTU"]),
            (&[(VAR_MTU, "70000")], &[VAR_MTU, "not an MTU"]),
            (&[(VAR_MTU, "60")], &[VAR_MTU, "68"]),
            (
                &[(VAR_MTU, "1000"), (VAR_ADDR6, "fd77::2")],
                &[VAR_MTU, "1280"],
            ),
            (&[(VAR_NAME, "a/b")], &[VAR_NAME, "interface name"]),
            (
                &[(VAR_NAME, "sixteen-bytes-xx")],
                &[VAR_NAME, "interface name"],
            ),
            (&[(VAR_NAME, "eth 0")], &[VAR_NAME, "interface name"]),
            (&[(VAR_ADDR6, "10.77.0.2")], &[VAR_ADDR6, "IPv6"]),
            (&[(VAR_ADDR6, "fd77::2/128")], &[VAR_ADDR6, "1 to 127"]),
            (&[(VAR_HOST_ADDR6, "fd77::1")], &[VAR_HOST_ADDR6, VAR_ADDR6]),
            (
                &[(VAR_ADDR6, "fd77::2/64"), (VAR_HOST_ADDR6, "fd78::1")],
                &[VAR_HOST_ADDR6, "outside"],
            ),
        ];
        for (vars, expected) in cases {
            let msg = config_err(vars);
            for part in *expected {
                assert!(msg.contains(part), "{vars:?}: {msg:?} lacks {part:?}");
            }
        }
    }

    #[test]
    fn validate_names_the_field() {
        let c = TunConfig {
            host_addr: Ipv4Addr::new(10, 1, 0, 1),
            ..TunConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("TunConfig::host_addr"), "{e}");
        // `new` checks first, before anything else (no runtime or privilege needed).
        let e = TunDatapath::new(c).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn outside_a_runtime_it_errs_rather_than_panics() {
        let e = TunDatapath::new(TunConfig::default()).unwrap_err();
        assert!(e.to_string().contains("tokio runtime"), "{e}");
    }

    #[test]
    fn preflight_names_what_is_missing() {
        let e = preflight("rawtcp0", Path::new("/nonexistent/net/tun"), None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/net/tun does not exist"), "{msg}");
        assert!(msg.contains("modprobe tun"), "{msg}");

        let no_net_admin = !(1u64 << CAP_NET_ADMIN_BIT);
        let e = preflight("rawtcp0", Path::new("/"), Some(no_net_admin)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let msg = e.to_string();
        assert!(msg.contains("needs CAP_NET_ADMIN (run as root"), "{msg}");
        assert!(msg.contains("rawtcp0"), "{msg}");

        preflight("rawtcp0", Path::new("/"), Some(1 << CAP_NET_ADMIN_BIT)).unwrap();
        // Unknown capabilities: the kernel will say.
        preflight("rawtcp0", Path::new("/"), None).unwrap();
    }

    #[test]
    fn reads_the_effective_capabilities() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1fffeffffff));
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
    }

    #[test]
    fn kernel_errors_say_what_they_mean() {
        let c = TunConfig::default();
        let cases = [
            (
                io::Error::from_raw_os_error(1),
                io::ErrorKind::PermissionDenied,
                "CAP_NET_ADMIN",
            ),
            (
                io::Error::from_raw_os_error(13),
                io::ErrorKind::PermissionDenied,
                "run as root",
            ),
            (
                io::Error::from_raw_os_error(EBUSY),
                io::ErrorKind::ResourceBusy,
                "in use",
            ),
            (
                io::Error::from_raw_os_error(ENODEV),
                io::ErrorKind::NotFound,
                "modprobe tun",
            ),
            (
                io::Error::from_raw_os_error(2),
                io::ErrorKind::NotFound,
                "no TUN driver",
            ),
            (
                io::Error::from_raw_os_error(EINVAL),
                io::ErrorKind::InvalidInput,
                "another kind",
            ),
        ];
        for (e, kind, part) in cases {
            let e = creation_error(e, &c);
            assert_eq!(e.kind(), kind, "{e}");
            let msg = e.to_string();
            assert!(msg.starts_with("rawtcp tun datapath: "), "{msg}");
            assert!(msg.contains(part), "{msg:?} lacks {part:?}");
        }
    }

    fn tcp_packet(src: IpAddr, dst: IpAddr, dst_port: u16) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port,
            flags: TcpFlags::SYN,
            ..TcpRepr::default()
        };
        let mut buf = vec![0u8; 100];
        let n = emit_tcp_packet(src, dst, 64, &tcp, b"", &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn classifies_by_destination_and_never_panics() {
        let me: Ipv4Addr = "10.77.0.2".parse().unwrap();
        let me6: Ipv6Addr = "fd77::2".parse().unwrap();
        let host = IpAddr::V4("10.77.0.1".parse().unwrap());
        let host6 = IpAddr::V6("fd77::1".parse().unwrap());
        let to_me = tcp_packet(host, me.into(), 80);
        let to_other = tcp_packet(host, IpAddr::V4("10.77.0.3".parse().unwrap()), 80);
        let to_me6 = tcp_packet(host6, me6.into(), 80);
        assert_eq!(classify(&to_me, me, None), Verdict::Deliver);
        assert_eq!(classify(&to_other, me, None), Verdict::NotForUs);
        assert_eq!(classify(&to_me6, me, Some(me6)), Verdict::Deliver);
        assert_eq!(classify(&to_me6, me, None), Verdict::NotForUs);
        let mut bad_ihl = to_me.clone();
        bad_ihl[0] = 0x44;
        assert_eq!(classify(&bad_ihl, me, None), Verdict::Malformed);
        let mut long_ihl = to_me.clone();
        long_ihl.truncate(22);
        long_ihl[0] = 0x46;
        assert_eq!(classify(&long_ihl, me, None), Verdict::Malformed);
        for packet in [&to_me, &to_me6] {
            for len in 0..packet.len() {
                let _ = classify(&packet[..len], me, Some(me6));
            }
        }
        assert_eq!(classify(&[], me, None), Verdict::Malformed);
        assert_eq!(classify(&[0x50; 60], me, None), Verdict::Malformed);
        assert_eq!(classify(&to_me6[..39], me, Some(me6)), Verdict::Malformed);
    }

    #[test]
    fn binds_like_the_kernel() {
        let sa = |ip: &str, port| SocketAddr::new(ip.parse().unwrap(), port);
        let kind = |r: io::Result<SocketAddr>| r.unwrap_err().kind();
        let mut p = Ports::new(0);
        assert_eq!(p.claim(sa("10.77.0.2", 80)).unwrap(), sa("10.77.0.2", 80));
        assert_eq!(kind(p.claim(sa("10.77.0.2", 80))), io::ErrorKind::AddrInUse);
        assert_eq!(kind(p.claim(sa("0.0.0.0", 80))), io::ErrorKind::AddrInUse);
        // The other family does not clash.
        assert_eq!(p.claim(sa("::", 80)).unwrap(), sa("::", 80));
        assert_eq!(kind(p.claim(sa("fd77::2", 80))), io::ErrorKind::AddrInUse);
        assert_eq!(p.claim(sa("0.0.0.0", 443)).unwrap(), sa("0.0.0.0", 443));
        assert_eq!(
            kind(p.claim(sa("10.77.0.2", 443))),
            io::ErrorKind::AddrInUse
        );
        p.release(sa("10.77.0.2", 80));
        p.release(sa("::", 80));
        assert_eq!(p.claim(sa("0.0.0.0", 80)).unwrap(), sa("0.0.0.0", 80));

        // Port 0: distinct ephemeral ports until the range is used up, then AddrInUse.
        let mut p = Ports::new(100);
        let first = p.claim(sa("10.77.0.2", 0)).unwrap();
        assert_eq!(first.port(), EPHEMERAL_FIRST + 100);
        let mut seen = std::collections::HashSet::from([first.port()]);
        for _ in 1..EPHEMERAL_COUNT {
            let got = p.claim(sa("10.77.0.2", 0)).unwrap();
            assert!(got.port() >= EPHEMERAL_FIRST);
            assert!(seen.insert(got.port()), "{got} handed out twice");
        }
        assert_eq!(kind(p.claim(sa("10.77.0.2", 0))), io::ErrorKind::AddrInUse);
        assert_eq!(kind(p.claim(sa("0.0.0.0", 0))), io::ErrorKind::AddrInUse);
        assert!(p.claim(sa("fd77::2", 0)).is_ok());
        p.release(sa("10.77.0.2", 50000));
        assert_eq!(p.claim(sa("10.77.0.2", 0)).unwrap(), sa("10.77.0.2", 50000));
        assert!(random_offset() < EPHEMERAL_COUNT);
    }

    // ---- Privileged tests: run as root, each in a child process set up for it. ----

    /// The effective user id, from `/proc/self/status`.
    fn euid() -> Option<u32> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
        uids.split_whitespace().nth(1)?.parse().ok()
    }

    fn have(tool: &str) -> bool {
        Command::new(tool).arg("--version").output().is_ok()
    }

    /// Whether the privileged test `test` can run here; if not, it is skipped loudly, or
    /// fails under CI.
    fn privileged(test: &str, tools: &[&str]) -> bool {
        let mut missing = Vec::new();
        if euid() != Some(0) {
            missing.push("root".to_string());
        }
        if !Path::new(TUN_PATH).exists() {
            missing.push(TUN_PATH.to_string());
        }
        for tool in tools {
            if !have(tool) {
                missing.push(format!("the `{tool}` command"));
            }
        }
        if missing.is_empty() {
            return true;
        }
        let msg = format!("{test} needs {}", missing.join(", "));
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg} (CI=true: a privileged test may not be skipped)");
        }
        skipped(&msg);
        false
    }

    /// Says loudly that a test is skipped: straight to the process's stderr, which the test
    /// harness does not capture, so that it shows without `--nocapture`.
    fn skipped(msg: &str) {
        let _ = writeln!(io::stderr(), "SKIPPED: {msg}");
    }

    /// Runs `cmd` (a program and its arguments), panicking with its output if it fails.
    fn run(cmd: &[&str]) -> String {
        let out = Command::new(cmd[0])
            .args(&cmd[1..])
            .output()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?}: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn describe(out: &Output) -> String {
        format!(
            "{}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Runs this test binary's test `test` in a child, under `wrapper` (a command that execs
    /// its arguments in some changed setting), with `ROLE_VAR=role`; asserts that it passed.
    fn run_child(wrapper: &[&str], test: &str, role: &str) {
        let exe = std::env::current_exe().unwrap();
        let module = module_path!();
        let path = module.split_once("::").map_or(module, |(_, rest)| rest);
        let test_path = format!("{path}::{test}");
        let out = Command::new(wrapper[0])
            .args(&wrapper[1..])
            .arg(&exe)
            .args([&test_path, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_VAR, role)
            .output()
            .unwrap();
        let text = describe(&out);
        eprintln!("child run of {test_path} ({role}):\n{text}");
        assert!(out.status.success(), "child {role} failed: {text}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "child {role} ran no test: {text}"
        );
    }

    fn role() -> Option<String> {
        std::env::var(ROLE_VAR).ok()
    }

    /// A network namespace of the test's own, deleted (with every interface in it) on drop.
    struct Netns(String);

    impl Netns {
        fn new() -> Option<Netns> {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let name = format!("rtcpt-{}-{nanos}", std::process::id());
            let out = Command::new("ip")
                .args(["netns", "add", &name])
                .output()
                .ok()?;
            if !out.status.success() {
                eprintln!("ip netns add {name}: {}", describe(&out));
                return None;
            }
            Some(Netns(name))
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }

    /// Deletes the interface on drop if it is still there (whatever happened to the test).
    struct LinkGuard(String);

    impl Drop for LinkGuard {
        fn drop(&mut self) {
            if link_exists(&self.0) {
                let _ = Command::new("ip").args(["link", "del", &self.0]).output();
            }
        }
    }

    fn link_exists(name: &str) -> bool {
        Command::new("ip")
            .args(["link", "show", "dev", name])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The unique names and addresses of one privileged run.
    fn test_config() -> TunConfig {
        let pid = std::process::id();
        let n = (pid % 250) as u8 + 1;
        let addr6 = if std::fs::read_to_string("/proc/sys/net/ipv6/conf/default/disable_ipv6")
            .is_ok_and(|v| v.trim() == "0")
        {
            Some((
                format!("fd77:{n:x}::2").parse().unwrap(),
                format!("fd77:{n:x}::1").parse().unwrap(),
                64,
            ))
        } else {
            eprintln!("IPv6 is disabled here: IPv4 only");
            None
        };
        TunConfig {
            name: format!("rtcpt{}", pid % 10000),
            addr: Ipv4Addr::new(10, 77, n, 2),
            prefix: 24,
            host_addr: Ipv4Addr::new(10, 77, n, 1),
            mtu: 1400,
            addr6,
        }
    }

    fn send_one(dp: &TunDatapath, src: IpAddr, dst: IpAddr, tcp: &TcpRepr) {
        let mut out = Batch::new(1, 1500);
        let slot = out.next_slot().unwrap();
        let len = emit_tcp_packet(src, dst, 64, tcp, b"", slot).unwrap();
        out.commit(len);
        dp.send(&out).unwrap();
    }

    /// Receives until `want` accepts a packet (returned) or `limit` passes (`None`).
    async fn recv_until(
        dp: &TunDatapath,
        limit: Duration,
        mut want: impl FnMut(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut inbox = Batch::new(8, 2048);
        loop {
            inbox.clear();
            let got = tokio::time::timeout_at(
                deadline,
                std::future::poll_fn(|cx| dp.poll_recv(cx, &mut inbox)),
            )
            .await;
            match got {
                Err(_elapsed) => return None,
                Ok(r) => r.unwrap(),
            }
            if let Some(p) = inbox.iter().find(|p| want(p)) {
                return Some(p.to_vec());
            }
        }
    }

    /// Sends a SYN from `local:40000` to a kernel listener on `peer` and expects the kernel's
    /// SYN+ACK back through the device; then resets the half-open connection.
    async fn syn_exchange(dp: &TunDatapath, local: IpAddr, peer: IpAddr) {
        let listener = std::net::TcpListener::bind((peer, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let claimed = dp
            .bind(SocketAddr::new(local, 40000), BindKind::Connect)
            .unwrap();
        let isn = 0x1234_5678u32;
        let syn = TcpRepr {
            src_port: 40000,
            dst_port: port,
            seq: isn,
            flags: TcpFlags::SYN,
            window: 64240,
            options: TcpOptions {
                mss: Some(1360),
                ..TcpOptions::default()
            },
            ..TcpRepr::default()
        };
        let before = dp.stats();
        send_one(dp, local, peer, &syn);
        assert_eq!(dp.stats().packets_out, before.packets_out + 1);
        let reply = recv_until(dp, Duration::from_secs(5), |p| {
            parse_tcp_packet(p, false).is_ok_and(|(ip, tcp, _)| {
                ip.src_addr() == peer && tcp.src_port == port && tcp.dst_port == 40000
            })
        })
        .await
        .unwrap_or_else(|| panic!("no answer from {peer}:{port}; stats {:?}", dp.stats()));
        // The kernel computed the checksum in full (no offload on the device).
        let (ip, tcp, payload) = parse_tcp_packet(&reply, true).unwrap();
        assert_eq!(ip.dst_addr(), local);
        assert!(
            tcp.flags.contains(TcpFlags::SYN) && tcp.flags.contains(TcpFlags::ACK),
            "{tcp:?}"
        );
        assert!(!tcp.flags.contains(TcpFlags::RST), "{tcp:?}");
        assert_eq!(tcp.ack, isn.wrapping_add(1));
        assert!(payload.is_empty());
        // Announced MSS: the device MTU less the headers.
        let headers = if local.is_ipv4() { 40 } else { 60 };
        assert_eq!(tcp.options.mss, Some(dp.config().mtu - headers), "{tcp:?}");
        let rst = TcpRepr {
            src_port: 40000,
            dst_port: port,
            seq: isn.wrapping_add(1),
            flags: TcpFlags::RST,
            ..TcpRepr::default()
        };
        send_one(dp, local, peer, &rst);
        dp.unbind(claimed);
    }

    /// The part run inside the test's network namespace.
    async fn exchange_in_netns() {
        let config = test_config();
        let name = config.name.clone();
        let _guard = LinkGuard(name.clone());
        let started = Instant::now();
        let dp = TunDatapath::new(config.clone()).unwrap();
        eprintln!("created {name} in {:?}: {dp:?}", started.elapsed());
        assert_eq!(dp.device_name(), name);
        assert_eq!(dp.name(), "tun");

        // What the host sees: the interface up with its MTU, the host address with the
        // prefix, the connected route; not the stack's address.
        let link = run(&["ip", "-o", "link", "show", "dev", &name]);
        assert!(link.contains("mtu 1400"), "{link}");
        assert!(link.contains(",UP"), "{link}");
        let addrs = run(&["ip", "-o", "addr", "show", "dev", &name]);
        assert!(
            addrs.contains(&format!("inet {}/24", config.host_addr)),
            "{addrs}"
        );
        assert!(!addrs.contains(&format!("{}/", config.addr)), "{addrs}");
        let routes = run(&["ip", "route", "show", "dev", &name]);
        let net = Ipv4Addr::from(u32::from(config.addr) & prefix_mask_v4(24));
        assert!(routes.contains(&format!("{net}/24")), "{routes}");

        // Datapath answers.
        let v4: IpAddr = config.addr.into();
        assert_eq!(dp.mtu(config.host_addr.into()), 1400);
        assert_eq!(dp.local_ip_for("10.1.2.3".parse().unwrap()).unwrap(), v4);
        assert_eq!(
            dp.bind("10.1.2.3:80".parse().unwrap(), BindKind::Listen)
                .unwrap_err()
                .kind(),
            io::ErrorKind::AddrNotAvailable
        );
        let any = dp
            .bind("0.0.0.0:0".parse().unwrap(), BindKind::Connect)
            .unwrap();
        assert!(any.port() >= EPHEMERAL_FIRST);
        dp.unbind(any);

        // The handshake's first half, with the kernel.
        syn_exchange(&dp, v4, config.host_addr.into()).await;
        if let Some((addr6, host6, _)) = config.addr6 {
            assert!(run(&["ip", "-o", "-6", "addr", "show", "dev", &name])
                .contains(&format!("inet6 {host6}/64")));
            assert_eq!(
                dp.local_ip_for("fd00::9".parse().unwrap()).unwrap(),
                IpAddr::V6(addr6)
            );
            syn_exchange(&dp, addr6.into(), host6.into()).await;
        } else {
            assert_eq!(
                dp.local_ip_for("fd00::9".parse().unwrap())
                    .unwrap_err()
                    .kind(),
                io::ErrorKind::AddrNotAvailable
            );
        }

        // Packets for another address of the prefix are dropped and counted; packets for
        // the stack's address are handed over whatever they carry.
        let udp = std::net::UdpSocket::bind((config.host_addr, 0)).unwrap();
        let other = Ipv4Addr::from(u32::from(config.addr) + 1);
        let before = dp.stats();
        udp.send_to(b"not for the stack", (other, 9)).unwrap();
        udp.send_to(b"for the stack", (config.addr, 9)).unwrap();
        let got = recv_until(&dp, Duration::from_secs(5), |p| {
            p.len() > 28 && &p[28..] == b"for the stack"
        })
        .await;
        assert!(got.is_some(), "stats {:?}", dp.stats());
        let after = dp.stats();
        assert!(after.not_for_us > before.not_for_us, "{after:?}");
        assert!(after.packets_in > before.packets_in, "{after:?}");

        // Malformed packets are dropped and counted, not sent, and nothing panics.
        let before = dp.stats();
        let mut junk = Batch::new(3, 64);
        junk.push(&[]).unwrap();
        junk.push(&[0x10, 0, 0]).unwrap();
        junk.push(&[0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6]).unwrap();
        let _ = dp.send(&junk);
        let after = dp.stats();
        assert_eq!(after.dropped_out, before.dropped_out + 3, "{after:?}");
        assert_eq!(after.packets_out, before.packets_out, "{after:?}");

        // A second datapath on the same device: refused at once, saying why.
        let e = TunDatapath::new(config.clone()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ResourceBusy, "{e}");
        assert!(e.to_string().contains("in use"), "{e}");
        assert!(link_exists(&name), "the refused second open removed {name}");

        // Dropping the datapath removes the device.
        drop(dp);
        let deadline = Instant::now() + Duration::from_secs(2);
        while link_exists(&name) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!link_exists(&name), "{name} outlived its datapath");
        let routes = run(&["ip", "route"]);
        assert!(!routes.contains(&format!("{net}/24")), "{routes}");

        // A name with `%d`: the kernel numbers it (the first free number in this namespace).
        let config_host = IpAddr::V4(config.host_addr);
        let numbered = TunConfig {
            name: "rtcpt%d".to_string(),
            ..config.clone()
        };
        let dp = TunDatapath::new(numbered).unwrap();
        let name = dp.device_name().to_string();
        let _guard = LinkGuard(name.clone());
        assert_eq!(name, "rtcpt0");
        assert!(link_exists(&name));

        // Deleting the interface under a datapath: receiving fails, naming the device, and
        // sending fails too.
        run(&["ip", "link", "del", &name]);
        let mut inbox = Batch::new(4, 2048);
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| dp.poll_recv(cx, &mut inbox)),
        )
        .await
        .expect("no error after the device was deleted");
        let e = got.unwrap_err();
        assert!(e.to_string().contains(&name), "{e}");
        assert!(e.to_string().contains("the interface was deleted"), "{e}");
        eprintln!("after `ip link del`: {e}");
        let mut out = Batch::new(1, 1500);
        out.push(&tcp_packet(v4, config_host, 80)).unwrap();
        assert!(dp.send(&out).is_err());
        assert_eq!(dp.stats().dropped_out, 1);
        drop(dp);

        // IPv6 disabled on new interfaces: the IPv6 step fails, saying so, and the device
        // made so far goes.
        if let Some(v6) = config.addr6 {
            run(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
            let e = TunDatapath::new(TunConfig {
                addr6: Some(v6),
                ..config.clone()
            })
            .unwrap_err();
            eprintln!("with IPv6 disabled: {e}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("assigning {}/64", v6.1)), "{msg}");
            assert!(msg.contains("IPv6 is disabled"), "{msg}");
            assert!(!link_exists(&config.name));
        }
    }

    fn current_thread_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// As root: a device in a network namespace of the test's own, a SYN to a kernel
    /// listener through it and the kernel's SYN+ACK back; the device's addresses, routes and
    /// removal; errors when it is busy or deleted.
    #[test]
    fn exchanges_a_syn_with_the_kernel() {
        const TEST: &str = "exchanges_a_syn_with_the_kernel";
        match role().as_deref() {
            Some("netns") => current_thread_runtime().block_on(exchange_in_netns()),
            Some(_) => {}
            None => {
                if !privileged(TEST, &["ip"]) {
                    return;
                }
                let Some(ns) = Netns::new() else {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("{TEST}: `ip netns add` failed");
                    }
                    skipped(&format!("{TEST} needs `ip netns add` to work"));
                    return;
                };
                run_child(&["ip", "netns", "exec", &ns.0], TEST, "netns");
                drop(ns);
            }
        }
    }

    /// As root, without `CAP_NET_ADMIN`: the datapath fails at once, naming the capability,
    /// and creates nothing.
    #[test]
    fn without_cap_net_admin_fails_at_once() {
        const TEST: &str = "without_cap_net_admin_fails_at_once";
        match role().as_deref() {
            Some("nocap") => current_thread_runtime().block_on(async {
                let config = test_config();
                let _guard = LinkGuard(config.name.clone());
                let started = Instant::now();
                let e = TunDatapath::new(config.clone()).unwrap_err();
                assert!(started.elapsed() < Duration::from_secs(1));
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
                let msg = e.to_string();
                assert!(msg.contains("needs CAP_NET_ADMIN (run as root"), "{msg}");
                assert!(msg.contains("/dev/net/tun"), "{msg}");
                assert!(!link_exists(&config.name));
            }),
            Some(_) => {}
            None => {
                if !privileged(TEST, &["setpriv", "ip"]) {
                    return;
                }
                run_child(
                    &[
                        "setpriv",
                        "--inh-caps=-net_admin",
                        "--bounding-set=-net_admin",
                    ],
                    TEST,
                    "nocap",
                );
            }
        }
    }

    /// As root, with `/dev/net/tun` hidden (a tmpfs over `/dev/net` in a mount namespace of
    /// the test's own): the datapath fails at once, naming the device node, and makes none.
    #[test]
    fn without_dev_net_tun_fails_at_once() {
        const TEST: &str = "without_dev_net_tun_fails_at_once";
        match role().as_deref() {
            Some("nodev") => current_thread_runtime().block_on(async {
                assert!(!Path::new(TUN_PATH).exists());
                let started = Instant::now();
                let e = TunDatapath::new(test_config()).unwrap_err();
                assert!(started.elapsed() < Duration::from_secs(1));
                assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
                let msg = e.to_string();
                assert!(msg.contains("/dev/net/tun does not exist"), "{msg}");
                assert!(!Path::new(TUN_PATH).exists(), "the device node was made");
            }),
            Some(_) => {}
            None => {
                if !privileged(TEST, &["unshare"]) {
                    return;
                }
                run_child(
                    &[
                        "unshare",
                        "--mount",
                        "--propagation",
                        "private",
                        "sh",
                        "-c",
                        "mount -t tmpfs tmpfs /dev/net && exec \"$@\"",
                        "sh",
                    ],
                    TEST,
                    "nodev",
                );
            }
        }
    }
}
