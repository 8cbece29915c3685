use super::config::*;
use super::*;
use crate::datapath::ports::EPHEMERAL_FIRST;
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
        (VAR_OFFLOAD, "Off"),
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
            offload: false,
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
        (&[(VAR_OFFLOAD, "maybe")], &[VAR_OFFLOAD, "on or off"]),
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
fn ephemeral_search_starts_inside_the_range() {
    for _ in 0..100 {
        assert!(random_offset() < EPHEMERAL_COUNT);
    }
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
        offload: true,
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

/// Runs test `test`'s `netns` part in a child process inside a network namespace of its
/// own, as root (skipped loudly without the privilege, failing under CI).
fn in_own_netns(test: &str) {
    if !privileged(test, &["ip"]) {
        return;
    }
    let Some(ns) = Netns::new() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: `ip netns add` failed");
        }
        skipped(&format!("{test} needs `ip netns add` to work"));
        return;
    };
    run_child(&["ip", "netns", "exec", &ns.0], test, "netns");
    drop(ns);
}

/// A two-worker runtime in the test's namespace, its loopback up.
fn netns_runtime() -> tokio::runtime::Runtime {
    run(&["ip", "link", "set", "lo", "up"]);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
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
        None => in_own_netns(TEST),
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

/// The interface's counter `name` (`/sys/class/net/DEV/statistics/NAME`).
fn link_counter(dev: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{name}"))
        .unwrap_or_else(|e| panic!("{dev} {name}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

/// The part run inside the test's network namespace: 16 MiB each way between a stack on the
/// device and the kernel's TCP, every byte checked, with the offloads `offload`. Returns
/// the average packet the device carried toward the kernel and from it.
async fn bulk_with_the_kernel(offload: bool) -> (u64, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BYTES: usize = 16 << 20;
    let pattern = |i: usize| (i % 251) as u8;
    let mut config = test_config();
    config.offload = offload;
    config.mtu = 1500;
    let name = config.name.clone();
    let _guard = LinkGuard(name.clone());
    let addr = SocketAddr::new(IpAddr::V4(config.addr), 8080);
    let stack = crate::Stack::builder()
        .datapath(TunDatapath::new(config).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        stack.datapath_capabilities().send_batch > 1,
        offload,
        "{:?}",
        stack.datapath_capabilities()
    );
    let listener = stack.bind(addr).await.unwrap();
    // The kernel's side, on a thread of its own: reads the stack's 16 MiB, then sends as
    // much back.
    let kernel = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0;
        while got < BYTES {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "EOF after {got} bytes");
            for (k, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, pattern(got + k), "byte {} from the stack", got + k);
            }
            got += n;
        }
        let data: Vec<u8> = (0..BYTES).map(pattern).collect();
        s.write_all(&data).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let (mut conn, _) = listener.accept().await.unwrap();
    let (rx0, tx0) = (
        link_counter(&name, "rx_packets"),
        link_counter(&name, "tx_packets"),
    );
    let (rxb0, txb0) = (
        link_counter(&name, "rx_bytes"),
        link_counter(&name, "tx_bytes"),
    );
    let data: Vec<u8> = (0..BYTES).map(pattern).collect();
    let timeout = Duration::from_secs(30);
    tokio::time::timeout(timeout, conn.write_all(&data))
        .await
        .unwrap()
        .unwrap();
    let mut back = Vec::with_capacity(BYTES);
    tokio::time::timeout(timeout, conn.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.len(), BYTES);
    assert!(back == data, "the kernel's bytes arrived changed");
    tokio::task::spawn_blocking(move || kernel.join().unwrap())
        .await
        .unwrap();
    // The device's receive side is what the stack wrote; its transmit side what it read.
    let out = (link_counter(&name, "rx_bytes") - rxb0) / (link_counter(&name, "rx_packets") - rx0);
    let into = (link_counter(&name, "tx_bytes") - txb0) / (link_counter(&name, "tx_packets") - tx0);
    eprintln!("offload {offload}: average packet out {out} B, in {into} B");
    drop(conn);
    drop(listener);
    drop(stack);
    (out, into)
}

/// As root, in a network namespace of the test's own: a stack on the device and the
/// kernel's TCP move 16 MiB each way, byte-exact, with the offloads on and off. On, the
/// stack's segments leave in trains and the kernel's arrive as large segments (the
/// device's average packet is over three times the MTU both ways); off, no packet exceeds
/// it.
#[test]
fn offloads_move_large_segments_both_ways() {
    const TEST: &str = "offloads_move_large_segments_both_ways";
    match role().as_deref() {
        Some("netns") => {
            let rt = netns_runtime();
            let (out, into) = rt.block_on(bulk_with_the_kernel(true));
            // Three times the MTU on average: trains (or the kernel's large segments) that
            // plain packets cannot reach. The stack's trains are as long as the segments
            // it has due back to back, which the machine's speed moves: 12,000-14,000 B
            // out in most runs on a 2-core machine, 7,000-7,200 B in about one in twenty.
            assert!(out > 3 * 1500, "trains out: {out} B per packet");
            assert!(into > 3 * 1500, "large segments in: {into} B per packet");
            let (out, into) = rt.block_on(bulk_with_the_kernel(false));
            assert!(out <= 1500 && into <= 1500, "{out} {into}");
        }
        Some(_) => {}
        None => in_own_netns(TEST),
    }
}

/// A stack of two shards on a new device made from `config` (MTU 1500), and the device's
/// shared state, for its counters.
fn two_shard_stack(mut config: TunConfig) -> (crate::Stack, Arc<Device>) {
    config.mtu = 1500;
    let dp = TunDatapath::new(config).unwrap();
    let dev = Arc::clone(&dp.dev);
    let stack = crate::Stack::builder()
        .datapath(dp)
        .shards(2)
        .build()
        .unwrap();
    assert_eq!(stack.shard_count(), 2);
    (stack, dev)
}

/// Accepts `n` connections on `listener`, calls `each` on every one, and echoes each
/// connection's bytes until its peer's FIN, then closes it.
fn echo_server(
    listener: crate::TcpListener,
    n: usize,
    each: impl Fn(&crate::TcpStream, SocketAddr) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncWriteExt;
    tokio::spawn(async move {
        let mut echoes = Vec::new();
        for _ in 0..n {
            let (mut conn, peer) = listener.accept().await.unwrap();
            each(&conn, peer);
            echoes.push(tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            }));
        }
        for e in echoes {
            e.await.unwrap();
        }
    })
}

/// A kernel client's turn on `s`: sends `data`, closes its sending side, and checks that
/// exactly `data` comes back.
fn kernel_echo(mut s: std::net::TcpStream, data: Vec<u8>, who: usize) {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = s.try_clone().unwrap();
    let check = std::thread::spawn(move || {
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        back
    });
    s.write_all(&data).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(check.join().unwrap() == data, "client {who}: echo changed");
}

/// The part run inside the test's network namespace: a stack of two shards on one device
/// (a queue each) serves 16 kernel clients and opens 8 connections to a kernel server,
/// every byte checked both ways; each connection lives on the shard its ports steer to,
/// and few packets needed handing from one shard to the other.
async fn sharded_with_the_kernel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BYTES: usize = 512 << 10;
    const CLIENTS: usize = 16;
    const OUTGOING: usize = 8;
    let pattern = |seed: usize, i: usize| ((i + seed * 7) % 251) as u8;
    let config = test_config();
    let name = config.name.clone();
    let _guard = LinkGuard(name.clone());
    let (addr, host) = (IpAddr::V4(config.addr), IpAddr::V4(config.host_addr));
    let (stack, dev) = two_shard_stack(config);
    assert!(stack.datapath_capabilities().shards);
    let queues = std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("rx-")
        })
        .count();
    assert_eq!(queues, 2, "one queue per shard");

    // Where a live connection is: its shard, which must be the one its ports steer to.
    let on_its_shard = |stack: &crate::Stack, local: SocketAddr, remote: SocketAddr| {
        let all = stack.connections().connections;
        let entry = all
            .iter()
            .find(|c| c.local == local && c.remote == remote)
            .expect("a live connection is listed");
        let steered = crate::datapath::shard_of(local.port(), remote.port(), 2);
        assert_eq!(entry.shard, steered, "{local} - {remote}");
    };

    // The stack echoes whatever its 16 kernel clients send.
    let listener = stack.bind(SocketAddr::new(addr, 8080)).await.unwrap();
    let server_stack = stack.clone();
    let server = echo_server(listener, CLIENTS, move |conn, peer| {
        on_its_shard(&server_stack, conn.local_addr().unwrap(), peer)
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            std::thread::spawn(move || {
                let s = std::net::TcpStream::connect(SocketAddr::new(addr, 8080)).unwrap();
                kernel_echo(s, (0..BYTES).map(|i| pattern(seed, i)).collect(), seed);
            })
        })
        .collect();

    // And it sends 512 KiB to a kernel server on 8 connections of its own, which the
    // server checks and answers with one byte.
    let kernel = std::net::TcpListener::bind(SocketAddr::new(host, 9090)).unwrap();
    let kernel_side = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut seen = Vec::new();
        for _ in 0..OUTGOING {
            let (mut s, peer) = kernel.accept().unwrap();
            seen.push(std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                let seed = usize::from(got[0]);
                assert_eq!(got.len(), BYTES, "from {peer}");
                assert!(got[1..]
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == pattern(seed, i + 1)));
                s.write_all(&[1]).unwrap();
            }));
        }
        seen.into_iter().for_each(|t| t.join().unwrap());
    });
    let outgoing: Vec<_> = (0..OUTGOING)
        .map(|seed| {
            let stack = stack.clone();
            tokio::spawn(async move {
                let mut s = stack.connect(SocketAddr::new(host, 9090)).await.unwrap();
                on_its_shard(&stack, s.local_addr().unwrap(), s.peer_addr().unwrap());
                let mut data: Vec<u8> = (0..BYTES).map(|i| pattern(seed, i)).collect();
                data[0] = seed as u8;
                s.write_all(&data).await.unwrap();
                s.shutdown().await.unwrap();
                let mut one = Vec::new();
                s.read_to_end(&mut one).await.unwrap();
                assert_eq!(one, [1]);
            })
        })
        .collect();
    let timeout = Duration::from_secs(60);
    for o in outgoing {
        tokio::time::timeout(timeout, o).await.unwrap().unwrap();
    }
    tokio::time::timeout(timeout, server)
        .await
        .unwrap()
        .unwrap();
    tokio::task::spawn_blocking(move || {
        clients.into_iter().for_each(|c| c.join().unwrap());
        kernel_side.join().unwrap();
    })
    .await
    .unwrap();
    let stats = dev.stats();
    eprintln!(
        "two shards on {name}: {stats:?}; per shard {:?}",
        stack.shard_stats()
    );
    // Both shards carried connections.
    for (k, s) in stack.shard_stats().iter().enumerate() {
        assert!(s.packets_in > 100, "shard {k} received little: {s:?}");
    }
    assert!(
        stats.handed_over > 0,
        "no SYN reached the other queue? {stats:?}"
    );
    assert!(
        stats.handed_over * 10 < stats.packets_in,
        "the kernel did not learn which queue each flow belongs to: {stats:?}"
    );
    drop(stack);
}

/// As root, in a network namespace of the test's own: a stack split into two shards over
/// one TUN device, a queue each (see `sharded_with_the_kernel`).
#[test]
fn two_shards_share_one_device() {
    const TEST: &str = "two_shards_share_one_device";
    match role().as_deref() {
        Some("netns") => {
            let rt = netns_runtime();
            rt.block_on(sharded_with_the_kernel());
        }
        Some(_) => {}
        None => in_own_netns(TEST),
    }
}

/// The part run inside the test's network namespace: 16 kernel clients of a two-shard
/// stack exchange a byte, fall silent for longer than the kernel remembers which queue a
/// flow belongs to (3 s after the flow's last write, forgotten at the next whole second:
/// the silence is 5 s), then send 64 KiB each: the packets the kernel now puts on the
/// other shard's queue are handed over, and every byte is echoed intact.
async fn sharded_after_an_idle_spell() {
    const CLIENTS: usize = 16;
    const BYTES: usize = 64 << 10;
    let config = test_config();
    let _guard = LinkGuard(config.name.clone());
    let addr = SocketAddr::new(IpAddr::V4(config.addr), 8080);
    let (stack, dev) = two_shard_stack(config);
    let server = echo_server(stack.bind(addr).await.unwrap(), CLIENTS, |_, _| {});
    let clients: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut one = [seed as u8];
                s.write_all(&one).unwrap();
                s.read_exact(&mut one).unwrap();
                assert_eq!(one, [seed as u8]);
                std::thread::sleep(Duration::from_millis(5000));
                kernel_echo(s, (0..BYTES).map(|i| (i * 3 + seed) as u8).collect(), seed);
            })
        })
        .collect();
    // Hand-overs of the handshakes are done once every client has its byte back.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = dev.stats().handed_over;
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .unwrap()
        .unwrap();
    tokio::task::spawn_blocking(move || clients.into_iter().for_each(|c| c.join().unwrap()))
        .await
        .unwrap();
    let stats = dev.stats();
    eprintln!("after an idle spell: handed over {before} before, {stats:?}");
    assert!(
        stats.handed_over > before,
        "no packet of 16 idle flows reached the other queue: {stats:?}"
    );
    drop(stack);
}

/// As root, in a network namespace of the test's own: connections of a two-shard stack
/// stay whole across an idle spell after which the kernel has forgotten their queues (see
/// `sharded_after_an_idle_spell`).
#[test]
fn two_shards_hand_over_what_the_kernel_misplaces() {
    const TEST: &str = "two_shards_hand_over_what_the_kernel_misplaces";
    match role().as_deref() {
        Some("netns") => netns_runtime().block_on(sharded_after_an_idle_spell()),
        Some(_) => {}
        None => in_own_netns(TEST),
    }
}
