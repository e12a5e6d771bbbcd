//! Kernel-enforced containment: a program started through [`spawn`] runs in a new user +
//! network namespace whose only interface is loopback. Whatever it (or anything it starts)
//! does with proxy variables, it can reach nothing but what listens on that loopback: no
//! internet, no cloud instance metadata service, not even the machine's own addresses.
//!
//! The user namespace is what lets an unprivileged process make the network namespace; it
//! maps the caller's uid and gid to themselves, so files written inside belong to the caller
//! and programs inside see the same identity. Where the kernel refuses (user namespaces
//! disabled by sysctl, a seccomp profile, an LSM), [`spawn`] says which step failed and why
//! ([`Refused`]), so the caller can fall back to proxy-only containment and record that.
//!
//! A process must be single-threaded to `unshare(CLONE_NEWUSER)`, so the namespace is made
//! in the forked child just before it executes its program (the harness itself is
//! multithreaded). Between fork and exec only async-signal-safe calls are made: no
//! allocation, no locks.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

/// How a run was contained, as matrix.json records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// The world and every cell in a user + network namespace with only loopback up.
    Namespace,
    /// Only the proxy variables cells get; the reason the namespace was not used.
    ProxyOnly(String),
}

impl std::fmt::Display for Containment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Containment::Namespace => f.write_str(NAMESPACE),
            Containment::ProxyOnly(reason) => write!(f, "proxy-only ({reason})"),
        }
    }
}

/// [`Containment::Namespace`] as recorded.
pub const NAMESPACE: &str = "user+network namespace";

/// The variable that can force proxy-only containment: `KO_MATRIX_CONTAINMENT=proxy-only`.
pub const ENV: &str = "KO_MATRIX_CONTAINMENT";

/// What [`ENV`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The namespace where the kernel allows it (unset, empty or `auto`).
    Auto,
    /// Proxy variables only (`proxy-only`).
    ProxyOnly,
}

impl Wanted {
    /// Reads [`ENV`]; an unknown value is an error naming the known ones.
    pub fn from_env() -> Result<Wanted, String> {
        Wanted::parse(&std::env::var(ENV).unwrap_or_default())
    }

    pub fn parse(text: &str) -> Result<Wanted, String> {
        match text {
            "" | "auto" => Ok(Wanted::Auto),
            "proxy-only" => Ok(Wanted::ProxyOnly),
            other => Err(format!("{ENV}={other:?}: expected `auto` or `proxy-only`")),
        }
    }
}

/// The step of setting up the namespace that the kernel refused, and its error.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct Refused {
    pub step: &'static str,
    pub source: io::Error,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The namespace could not be made; the program did not start.
    #[error("the kernel refused a user+network namespace: {0}")]
    Refused(Refused),
    /// The namespace was made but the program did not start (not found, not executable, …).
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: io::Error },
}

/// The setup steps, in order; a failure is reported by its index.
const STEPS: [&str; 7] = [
    "unshare(CLONE_NEWUSER | CLONE_NEWNET)",
    "writing /proc/self/setgroups",
    "writing /proc/self/uid_map",
    "writing /proc/self/gid_map",
    "opening a socket to configure lo",
    "reading lo's flags (SIOCGIFFLAGS)",
    "bringing lo up (SIOCSIFFLAGS)",
];

/// Spawns `cmd` with its program in a new user + network namespace with only loopback up.
/// Like every child of the harness it carries `PR_SET_PDEATHSIG` (SIGKILL) and is forked by
/// the process-long spawner thread (see [`crate::process`]); unlike [`crate::process::Contained`]
/// it stays in the caller's process group (a terminal's Ctrl-C reaches it) and is not killed
/// when its handle drops unless `cmd` asks for that (`kill_on_drop`). Must be called within a
/// tokio runtime, which then reaps the child.
pub fn spawn(mut cmd: tokio::process::Command) -> Result<tokio::process::Child, SpawnError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let spawn_err = |source| SpawnError::Spawn { program: program.clone(), source };
    // The child reports a refused step here: [step, errno as 4 bytes].
    let (report_read, report_write) = pipe().map_err(spawn_err)?;
    let report_fd = report_write.as_raw_fd();
    // SAFETY: getters with no side effects.
    let (uid, gid, parent) = unsafe { (libc::getuid(), libc::getgid(), libc::getpid()) };
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (unshare, open, write, close, socket, ioctl, prctl, getppid);
    // it allocates nothing.
    unsafe {
        cmd.as_std_mut().pre_exec(move || {
            if let Err((step, errno)) = enter_namespace(uid, gid) {
                let e = errno.to_le_bytes();
                let message = [step as u8, e[0], e[1], e[2], e[3]];
                libc::write(report_fd, message.as_ptr().cast(), message.len());
                return Err(io::Error::from_raw_os_error(errno));
            }
            // After the namespace is made: a change of credentials clears the setting.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The harness may have exited before prctl took effect (ESRCH: no allocation here).
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let spawned = crate::process::spawn_from_spawner(cmd);
    drop(report_write);
    match spawned {
        Ok(child) => Ok(child),
        Err(source) => match read_report(&report_read) {
            Some(refused) => Err(SpawnError::Refused(refused)),
            None => Err(spawn_err(source)),
        },
    }
}

/// Gives `cmd`'s program a mount namespace of its own in which `hosts` is `/etc/hosts`: names a
/// scenario adds (`registry.local`, `kind-registry`) resolve for that program and what it
/// starts, the way a hosts entry on a CI runner makes them resolve, and nowhere else (the
/// harness's own resolver never sees them). Root of a user namespace (the run's own, or the
/// machine's) makes the mount namespace directly; anyone else makes a user namespace for it.
pub fn with_hosts_file(cmd: &mut tokio::process::Command, hosts: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let source = std::ffi::CString::new(hosts.as_os_str().as_bytes())?;
    // SAFETY: getters with no side effects.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: the closure runs in the forked child before exec and makes only async-signal-safe
    // calls (unshare, open, write, close, mount); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                match write_proc(c"/proc/self/setgroups", b"deny") {
                    Err(e) if e != libc::ENOENT => return Err(io::Error::from_raw_os_error(e)),
                    _ => {}
                }
                let mut line = [0u8; 40];
                write_proc(c"/proc/self/uid_map", id_map_line(&mut line, uid)).map_err(io::Error::from_raw_os_error)?;
                let mut line = [0u8; 40];
                write_proc(c"/proc/self/gid_map", id_map_line(&mut line, gid)).map_err(io::Error::from_raw_os_error)?;
            }
            // Private first, so the bind mount stays in this namespace.
            let none = std::ptr::null();
            if libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::mount(source.as_ptr(), c"/etc/hosts".as_ptr(), none, libc::MS_BIND, std::ptr::null()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Whether [`spawn`] can make its namespace here: a forked child makes one and exits.
pub fn probe() -> Result<(), Refused> {
    let (report_read, report_write) = pipe().map_err(|source| Refused { step: "creating a pipe", source })?;
    let report_fd = report_write.as_raw_fd();
    // SAFETY: getters.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: the child makes only async-signal-safe calls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Refused { step: "fork", source: io::Error::last_os_error() });
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let code = match enter_namespace(uid, gid) {
                Ok(()) => 0,
                Err((step, errno)) => {
                    let e = errno.to_le_bytes();
                    let message = [step as u8, e[0], e[1], e[2], e[3]];
                    libc::write(report_fd, message.as_ptr().cast(), message.len());
                    1
                }
            };
            libc::_exit(code);
        }
    }
    drop(report_write);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(Refused { step: "waiting for the probe", source: e });
        }
    }
    match read_report(&report_read) {
        Some(refused) => Err(refused),
        None if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => Ok(()),
        None => {
            Err(Refused { step: "the probe", source: io::Error::other(format!("ended with wait status {status}")) })
        }
    }
}

/// The network interfaces this process sees (those of its network namespace).
pub fn interfaces() -> io::Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/net/dev")?;
    Ok(text.lines().skip(2).filter_map(|line| Some(line.split_once(':')?.0.trim().to_string())).collect())
}

/// A non-blocking, close-on-exec pipe: (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What a child wrote to the report pipe, if anything (it writes before it exits, and the
/// caller reads after it has).
fn read_report(read: &OwnedFd) -> Option<Refused> {
    let mut message = [0u8; 5];
    // SAFETY: reading into a local buffer of the given length.
    let n = unsafe { libc::read(read.as_raw_fd(), message.as_mut_ptr().cast(), message.len()) };
    if n != message.len() as isize {
        return None;
    }
    let step = STEPS.get(message[0] as usize).copied().unwrap_or("setting up the namespace");
    let errno = i32::from_le_bytes([message[1], message[2], message[3], message[4]]);
    Some(Refused { step, source: io::Error::from_raw_os_error(errno) })
}

/// Makes the namespaces and brings lo up; `Err((step, errno))` on the first failure.
/// Async-signal-safe: called between fork and exec.
fn enter_namespace(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), (usize, i32)> {
    let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: plain syscalls on memory this function owns.
    unsafe {
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
            return Err((0, errno()));
        }
        // Required before an unprivileged gid_map; absent before Linux 3.19, where it is not.
        match write_proc(c"/proc/self/setgroups", b"deny") {
            Err(e) if e != libc::ENOENT => return Err((1, e)),
            _ => {}
        }
        let mut line = [0u8; 40];
        write_proc(c"/proc/self/uid_map", id_map_line(&mut line, uid)).map_err(|e| (2, e))?;
        let mut line = [0u8; 40];
        write_proc(c"/proc/self/gid_map", id_map_line(&mut line, gid)).map_err(|e| (3, e))?;

        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return Err((4, errno()));
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (to, from) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *to = *from as libc::c_char;
        }
        if libc::ioctl(socket, libc::SIOCGIFFLAGS as _, &mut request) != 0 {
            let e = errno();
            libc::close(socket);
            return Err((5, e));
        }
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket, libc::SIOCSIFFLAGS as _, &request) != 0 {
            let e = errno();
            libc::close(socket);
            return Err((6, e));
        }
        libc::close(socket);
    }
    Ok(())
}

/// Writes `contents` to a /proc file in one write; `Err(errno)`.
unsafe fn write_proc(path: &CStr, contents: &[u8]) -> Result<(), i32> {
    let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(errno());
    }
    let written = libc::write(fd, contents.as_ptr().cast(), contents.len());
    let result = if written == contents.len() as isize { Ok(()) } else { Err(errno()) };
    libc::close(fd);
    result
}

/// `"<id> <id> 1\n"` in `buf` without allocating: the id maps to itself, one id wide.
fn id_map_line(buf: &mut [u8; 40], id: u32) -> &[u8] {
    let mut len = decimal(buf, id);
    buf[len] = b' ';
    len += 1;
    len += decimal(&mut buf[len..], id);
    buf[len..len + 3].copy_from_slice(b" 1\n");
    &buf[..len + 3]
}

/// Writes `n` in decimal at the start of `out`; returns the number of digits.
fn decimal(out: &mut [u8], mut n: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        out[i] = digits[count - 1 - i];
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_map_lines_map_an_id_to_itself() {
        let mut buf = [0u8; 40];
        assert_eq!(id_map_line(&mut buf, 0), b"0 0 1\n");
        let mut buf = [0u8; 40];
        assert_eq!(id_map_line(&mut buf, 1000), b"1000 1000 1\n");
        let mut buf = [0u8; 40];
        assert_eq!(id_map_line(&mut buf, u32::MAX), b"4294967295 4294967295 1\n");
    }

    #[test]
    fn containment_reads_as_recorded() {
        assert_eq!(Containment::Namespace.to_string(), "user+network namespace");
        assert_eq!(
            Containment::ProxyOnly("KO_MATRIX_CONTAINMENT=proxy-only".into()).to_string(),
            "proxy-only (KO_MATRIX_CONTAINMENT=proxy-only)"
        );
        assert_eq!(Wanted::parse(""), Ok(Wanted::Auto));
        assert_eq!(Wanted::parse("auto"), Ok(Wanted::Auto));
        assert_eq!(Wanted::parse("proxy-only"), Ok(Wanted::ProxyOnly));
        assert!(Wanted::parse("namespace").unwrap_err().contains("expected `auto` or `proxy-only`"));
    }

    #[test]
    fn this_process_sees_loopback() {
        assert!(interfaces().unwrap().iter().any(|i| i == "lo"));
    }

    #[test]
    fn a_refusal_names_its_step() {
        let (read, write) = pipe().unwrap();
        assert!(read_report(&read).is_none(), "nothing written: no refusal");
        let e = libc::EPERM.to_le_bytes();
        let message = [0u8, e[0], e[1], e[2], e[3]];
        // SAFETY: writing a local buffer to our own pipe.
        unsafe { libc::write(write.as_raw_fd(), message.as_ptr().cast(), message.len()) };
        let refused = read_report(&read).unwrap();
        assert_eq!(refused.step, "unshare(CLONE_NEWUSER | CLONE_NEWNET)");
        assert_eq!(refused.source.raw_os_error(), Some(libc::EPERM));
    }
}
