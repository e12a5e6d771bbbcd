//! The containment spawner for real: a process it starts sees only loopback, connects to
//! nothing else (fast, ENETUNREACH), still talks to itself over loopback, keeps the caller's
//! uid and gid, and dies with its parent. Where the kernel refuses user namespaces the tests
//! show as ignored, with the reason printed.
//!
//! This binary is also the contained process: started with `KO_MATRIX_CONTAINMENT_TEST_ROLE`
//! set, it does its part and prints what it saw as JSON instead of running tests.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ko_matrix::containment;
use libtest_mimic::{Arguments, Failed, Trial};

const ROLE: &str = "KO_MATRIX_CONTAINMENT_TEST_ROLE";
const TARGETS: &str = "KO_MATRIX_CONTAINMENT_TEST_TARGETS";

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("inside") => return inside(),
        Ok("parent") => return parent_of_a_contained_sleeper(),
        _ => {}
    }
    let args = Arguments::from_args();
    let refused = containment::probe().err();
    if let Some(refused) = &refused {
        eprintln!("SKIPPED containment tests: the kernel refuses a user+network namespace here: {refused}");
    }
    let trials = vec![
        Trial::test("a_contained_process_sees_only_loopback_and_reaches_nothing_else", sees_only_loopback)
            .with_ignored_flag(refused.is_some()),
        Trial::test("a_contained_process_dies_with_its_parent", dies_with_its_parent)
            .with_ignored_flag(refused.is_some()),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// Addresses that are not this machine's loopback: documentation ones, the cloud metadata
/// service, and this machine's own addresses on its other interfaces.
fn outside_targets() -> Vec<SocketAddr> {
    let mut targets: Vec<SocketAddr> = vec!["192.0.2.1:80".parse().unwrap(), "169.254.169.254:80".parse().unwrap()];
    if TcpListener::bind("[::1]:0").is_ok() {
        targets.push("[2001:db8::1]:80".parse().unwrap());
    }
    targets.extend(own_addresses().into_iter().map(|ip| SocketAddr::new(ip, 80)));
    targets
}

/// This machine's IPv4 and global IPv6 addresses outside loopback (getifaddrs).
fn own_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, which is walked read-only and freed once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut at = list;
        while !at.is_null() {
            let addr = (*at).ifa_addr;
            if !addr.is_null() {
                let ip = match (*addr).sa_family as i32 {
                    libc::AF_INET => Some(IpAddr::from(
                        u32::from_be((*addr.cast::<libc::sockaddr_in>()).sin_addr.s_addr).to_be_bytes(),
                    )),
                    libc::AF_INET6 => Some(IpAddr::from((*addr.cast::<libc::sockaddr_in6>()).sin6_addr.s6_addr)),
                    _ => None,
                };
                let usable = |ip: &IpAddr| match ip {
                    IpAddr::V4(v4) => !v4.is_loopback(),
                    IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
                };
                if let Some(ip) = ip.filter(usable) {
                    if !found.contains(&ip) {
                        found.push(ip);
                    }
                }
            }
            at = (*at).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

fn interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/self/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_string()))
        .collect()
}

/// The contained side: what it sees, as JSON on stdout.
fn inside() {
    let targets: Vec<SocketAddr> = std::env::var(TARGETS)
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect();
    let connects: Vec<serde_json::Value> = targets
        .iter()
        .map(|target| {
            let started = Instant::now();
            let result = TcpStream::connect_timeout(target, Duration::from_secs(3));
            let millis = started.elapsed().as_millis() as u64;
            match result {
                Ok(_) => serde_json::json!({ "target": target.to_string(), "connected": true, "millis": millis }),
                Err(e) => serde_json::json!({ "target": target.to_string(), "connected": false, "errno": e.raw_os_error(), "error": e.to_string(), "millis": millis }),
            }
        })
        .collect();
    let loopback = (|| -> std::io::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut client = TcpStream::connect(listener.local_addr()?)?;
        let (mut server, _) = listener.accept()?;
        client.write_all(b"ping")?;
        let mut got = [0u8; 4];
        server.read_exact(&mut got)?;
        Ok(String::from_utf8_lossy(&got).into_owned())
    })();
    // SAFETY: getters.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let report = serde_json::json!({
        "interfaces": interfaces(),
        "netns": std::fs::read_link("/proc/self/ns/net").map(|p| p.display().to_string()).unwrap_or_default(),
        "uid": uid,
        "gid": gid,
        "loopback": loopback.map_err(|e| e.to_string()),
        "connects": connects,
    });
    println!("{report}");
}

fn sees_only_loopback() -> Result<(), Failed> {
    let targets = outside_targets();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let output = runtime.block_on(async {
        let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE, "inside")
            .env(TARGETS, targets.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = containment::spawn(cmd).map_err(|e| e.to_string())?;
        child.wait_with_output().await.map_err(|e| e.to_string())
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the contained process failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let seen: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| format!("{e}: {text}"))?;
    let here = interfaces();
    if seen["interfaces"] != serde_json::json!(["lo"]) {
        return Err(
            format!("inside, the interfaces are {} (here: {here:?}); expected only lo", seen["interfaces"]).into()
        );
    }
    let own_netns = std::fs::read_link("/proc/self/ns/net").unwrap().display().to_string();
    if seen["netns"] == own_netns.as_str() {
        return Err(format!("the contained process shares this network namespace ({own_netns})").into());
    }
    if seen["loopback"] != serde_json::json!({ "Ok": "ping" }) {
        return Err(format!("a loopback listener inside did not answer: {}", seen["loopback"]).into());
    }
    // SAFETY: getters.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if seen["uid"] != uid || seen["gid"] != gid {
        return Err(format!(
            "inside, uid/gid are {}/{}; outside {uid}/{gid}: files written inside would not be the caller's",
            seen["uid"], seen["gid"]
        )
        .into());
    }
    let connects = seen["connects"].as_array().unwrap();
    if connects.len() != targets.len() {
        return Err(format!("{} connection attempts reported for {} targets", connects.len(), targets.len()).into());
    }
    for attempt in connects {
        let unreachable = attempt["errno"] == libc::ENETUNREACH;
        let fast = attempt["millis"].as_u64().unwrap_or(u64::MAX) < 1000;
        if !unreachable || !fast {
            return Err(format!(
                "connecting to {} from inside should fail at once with ENETUNREACH; it gave {attempt}",
                attempt["target"]
            )
            .into());
        }
    }
    eprintln!(
        "contained: interfaces {} (here {here:?}); unreachable: {}",
        seen["interfaces"],
        targets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// The `parent` role: starts a contained sleeper, prints its pid, and waits to be killed.
fn parent_of_a_contained_sleeper() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut cmd = tokio::process::Command::new("sleep");
        cmd.arg("60");
        let child = containment::spawn(cmd).unwrap();
        println!("{}", child.id().unwrap());
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'))
}

fn dies_with_its_parent() -> Result<(), Failed> {
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "parent")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(parent.stdout.take().unwrap()), &mut line).unwrap();
    let sleeper: Option<u32> = line.trim().parse().ok();
    let running = sleeper.is_some_and(alive);
    parent.kill().unwrap();
    parent.wait().unwrap();
    let sleeper = sleeper.ok_or_else(|| format!("the parent printed {line:?}, not a pid"))?;
    if !running {
        return Err("the contained sleeper is not running".into());
    }
    let started = Instant::now();
    while alive(sleeper) {
        if started.elapsed() > Duration::from_secs(5) {
            // SAFETY: cleaning up the process this test started.
            unsafe { libc::kill(sleeper as i32, libc::SIGKILL) };
            return Err(format!(
                "the contained process {sleeper} outlived its SIGKILLed parent (PR_SET_PDEATHSIG lost)"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
