//! The TUN datapath's settings: [`TunConfig`], read from fields or from the environment,
//! with the addresses and prefixes it derives.

use super::*;

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
    /// Segmentation offloads (default on): a virtio-net header on every packet, so that a
    /// run of the stack's segments leaves in one write of up to 64 KiB for the kernel to
    /// cut (TSO), and the kernel's TCP hands the stack up to 64 KiB per read. Off, each
    /// packet costs a system call. A kernel that refuses them gets a device without them.
    pub offload: bool,
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
            offload: true,
        }
    }
}

/// What configuration errors call each setting: the struct's fields, or the environment
/// variables they were read from.
pub(super) struct Labels {
    name: &'static str,
    addr: &'static str,
    host: &'static str,
    mtu: &'static str,
    addr6: &'static str,
    host6: &'static str,
}

pub(super) const FIELD_LABELS: Labels = Labels {
    name: "TunConfig::name",
    addr: "TunConfig::addr/prefix",
    host: "TunConfig::host_addr",
    mtu: "TunConfig::mtu",
    addr6: "TunConfig::addr6 (stack address/prefix)",
    host6: "TunConfig::addr6 (host address)",
};

pub(super) const VAR_LABELS: Labels = Labels {
    name: VAR_NAME,
    addr: VAR_ADDR,
    host: VAR_HOST_ADDR,
    mtu: VAR_MTU,
    addr6: VAR_ADDR6,
    host6: VAR_HOST_ADDR6,
};

impl TunConfig {
    /// The configuration given by the environment (see the [module documentation](crate::datapath::tun)):
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
        if let Some(v) = get(VAR_OFFLOAD) {
            config.offload = crate::datapath::switch(&v)
                .ok_or_else(|| env_error(VAR_OFFLOAD, &v, "must be on or off"))?;
        }
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
pub(super) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
}

pub(super) fn env_error(var: &str, value: &str, why: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{var}={value:?}: {why}"),
    )
}

/// Splits `addr[/prefix]`.
pub(super) fn split_prefix<'a>(
    var: &str,
    value: &'a str,
    max: u8,
) -> io::Result<(&'a str, Option<u8>)> {
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

pub(super) fn parse_v4_prefix(var: &str, value: &str) -> io::Result<(Ipv4Addr, Option<u8>)> {
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

pub(super) fn parse_v6_prefix(var: &str, value: &str) -> io::Result<(Ipv6Addr, Option<u8>)> {
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
pub(super) fn parse_plain<T: std::str::FromStr>(var: &str, value: &str) -> io::Result<T> {
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

pub(super) fn prefix_mask_v4(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

pub(super) fn prefix_mask_v6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// The host address used when only the stack's is given: the first address of the prefix, or
/// the second if the stack has the first (the other one of a /31).
pub(super) fn default_host_v4(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
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
pub(super) fn default_host_v6(addr: Ipv6Addr, prefix: u8) -> Option<Ipv6Addr> {
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
