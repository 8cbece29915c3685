//! What the TUN datapath checks before it touches the kernel, and what its errors mean:
//! the device node, `CAP_NET_ADMIN`, and the kernel's answers to creating the device.

use super::*;

/// The effective capability set of this process (`CapEff` in `/proc/self/status`), if it can
/// be read.
pub(super) fn cap_eff() -> Option<u64> {
    parse_cap_eff(&std::fs::read_to_string("/proc/self/status").ok()?)
}

pub(super) fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// The checks made before touching the kernel, so that what is missing is named precisely:
/// the device node (whose absence the TUN library would otherwise repair with `mknod`) and
/// `CAP_NET_ADMIN` (when the capability set can be read).
pub(super) fn preflight(
    name: &str,
    tun_path: &std::path::Path,
    caps: Option<u64>,
) -> io::Result<()> {
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

/// `IFF_PERSIST` in a TUN device's `tun_flags`.
const IFF_PERSIST: u32 = 0x0800;

/// Refuses a device name that another process's TUN device has: a multi-queue device would
/// take a second opener as one more queue, and the two stacks would share its traffic.
/// (A persistent device, made with `ip tuntap add`, is attached to, as before.)
pub(super) fn not_taken(name: &str) -> io::Result<()> {
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/tun_flags"));
    let Ok(flags) = flags else {
        return Ok(());
    };
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    if flags & IFF_PERSIST != 0 {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!(
            "rawtcp tun datapath: TUN device {name} is in use by another process (another \
             stack?); pick another name with {VAR_NAME}"
        ),
    ))
}

/// The error of creating the device, saying what it means.
pub(super) fn creation_error(e: io::Error, config: &TunConfig) -> io::Error {
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
