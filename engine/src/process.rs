//! Processes that stages start: each in a process group of its own, so that the whole
//! group (the shell and everything it started) ends with the stage, when soma-flow is
//! interrupted, and when soma-flow itself dies.
//!
//! - When the stage's main process exits, whatever it left running in its group is
//!   killed (before the main process is reaped, so the group id cannot have been
//!   reused).
//! - On SIGINT, SIGTERM or SIGHUP the scheduler calls [`terminate_all`].
//! - A SIGKILL of soma-flow cannot be caught, so the groups have a guardian: one tiny
//!   `sh` per soma-flow process, in its own group, reading from a pipe whose only
//!   writer is soma-flow the groups that start (`+G`) and end (`-G`). When soma-flow
//!   dies the kernel closes the pipe, the read ends, and the guardian kills the groups
//!   still listed. A group is taken off the list before its leader is reaped, so the
//!   guardian never acts on a reused id.

use std::collections::HashSet;
use std::io::{self, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static LIVE: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Option<HashSet<i32>>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running stage process and its group.
pub struct StageProcess {
    pub child: Child,
    pgid: i32,
    /// Until the group is released: listed with the guardian and in [`LIVE`].
    guarded: bool,
}

/// Starts `cmd` as the leader of a new process group, guarded (see the module docs).
pub fn spawn(cmd: &mut Command) -> io::Result<StageProcess> {
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let child = cmd.spawn()?;
    let pgid = child.id() as i32;
    live().get_or_insert_with(HashSet::new).insert(pgid);
    let mut process = StageProcess {
        child,
        pgid,
        guarded: true,
    };
    if let Err(e) = guard(&format!("+{pgid}")) {
        let _ = process.child.kill();
        process.release();
        let _ = process.child.wait();
        return Err(e);
    }
    Ok(process)
}

/// The process's guardian: its `sh`, and the pipe that tells it the groups.
static GUARDIAN: Mutex<Option<(Child, io::PipeWriter)>> = Mutex::new(None);

/// Tells the guardian `line` (`+G`: guard group G; `-G`: no longer), starting one
/// first if there is none or the last is gone.
fn guard(line: &str) -> io::Result<()> {
    if !cfg!(unix) {
        return Ok(());
    }
    let mut guardian = GUARDIAN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, pipe)) = guardian.as_mut() {
        if writeln!(pipe, "{line}").is_ok() {
            return Ok(());
        }
    }
    let (child, mut pipe) = spawn_guardian()?;
    writeln!(pipe, "{line}")?;
    *guardian = Some((child, pipe));
    Ok(())
}

/// The guardian keeps the groups it is told in a list; when the pipe closes (soma-flow
/// is gone) it kills those still listed.
fn spawn_guardian() -> io::Result<(Child, io::PipeWriter)> {
    let (reader, writer) = io::pipe()?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(GUARDIAN_SCRIPT)
        .stdin(reader)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    Ok((cmd.spawn()?, writer))
}

const GUARDIAN_SCRIPT: &str = r#"set -f; live=" "
while read -r line; do
  g=${line#?}
  case $line in
    +*) live="$live$g " ;;
    -*) case $live in *" $g "*) live="${live%%" $g "*} ${live#*" $g "}" ;; esac ;;
  esac
done
for g in $live; do [ "$g" -gt 1 ] && kill -KILL "-$g" 2>/dev/null; done
exit 0"#;

impl StageProcess {
    /// Waits for the main process; then kills what is left of its group, and reaps.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        wait_exited(self.child.id())?;
        signal_group(self.pgid, Signal::Kill);
        self.release();
        self.child.wait()
    }

    /// [`StageProcess::wait`], until `deadline`: then the group is asked to stop
    /// (SIGTERM), killed two seconds later, reaped, and the answer is `None`.
    pub fn wait_until(&mut self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        let Some(deadline) = deadline else {
            return self.wait().map(Some);
        };
        while Instant::now() < deadline {
            if has_exited(self.child.id())? {
                return self.wait().map(Some);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(self.pgid, Signal::Term);
        let grace = Instant::now() + Duration::from_secs(2);
        while Instant::now() < grace && !has_exited(self.child.id())? {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait()?;
        Ok(None)
    }

    /// Takes the group off the guardian's list and forgets it: before the leader is
    /// reaped, so that the guardian cannot act on a reused id.
    fn release(&mut self) {
        if std::mem::take(&mut self.guarded) {
            let _ = guard(&format!("-{}", self.pgid));
            if let Some(set) = live().as_mut() {
                set.remove(&self.pgid);
            }
        }
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        if self.guarded {
            signal_group(self.pgid, Signal::Kill);
            self.release();
            let _ = self.child.wait();
        }
    }
}

/// Asks every live stage group to stop (SIGTERM), and kills those still alive after
/// `grace`. Used on the way out of an interrupted run.
pub fn terminate_all(grace: Duration) {
    let groups: Vec<i32> = live().iter().flatten().copied().collect();
    for &g in &groups {
        signal_group(g, Signal::Term);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && groups.iter().any(|&g| group_alive(g)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &g in &groups {
        signal_group(g, Signal::Kill);
    }
}

enum Signal {
    Term,
    Kill,
}

#[cfg(unix)]
fn signal_group(pgid: i32, sig: Signal) {
    let sig = match sig {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    if pgid > 1 {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

#[cfg(not(unix))]
fn signal_group(_: i32, _: Signal) {}

#[cfg(unix)]
fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pgid > 1 && unsafe { libc::kill(-pgid, 0) } == 0
}

#[cfg(not(unix))]
fn group_alive(_: i32) -> bool {
    false
}

/// Blocks until process `pid` has exited, leaving it unreaped (a zombie keeps its
/// id, and so its group id, from being reused).
fn wait_exited(pid: u32) -> io::Result<()> {
    exited(pid, true).map(drop)
}

/// Whether process `pid` (a child) has exited, leaving it unreaped.
fn has_exited(pid: u32) -> io::Result<bool> {
    exited(pid, false)
}

/// Whether process `pid` has exited, waiting for it when `block`; never reaps it.
#[cfg(unix)]
fn exited(pid: u32, block: bool) -> io::Result<bool> {
    let flags = libc::WEXITED | libc::WNOWAIT | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: waitid writes only into the zeroed siginfo we own; si_pid reads it.
        let (rc, exited) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags);
            (rc, info.si_pid() != 0)
        };
        if rc == 0 {
            return Ok(exited);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(not(unix))]
fn exited(_: u32, block: bool) -> io::Result<bool> {
    Ok(block)
}

/// Whether process `pid` exists and is not a zombie waiting to be reaped.
#[cfg(all(test, unix))]
pub(crate) fn running(pid: i32) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return false,
            Ok(stat) => {
                let state = stat
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next());
                if state == Some("Z") {
                    return false;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_a_stage_are_killed_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("sleep 30 & echo $! > {}", pidfile.display()));
        let mut p = spawn(&mut cmd).unwrap();
        assert!(p.wait().unwrap().success());
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!running(pid), "the background sleep outlived its stage");
    }

    /// A group in its own process group, as a stage runs.
    fn sleeper() -> Child {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn().unwrap()
    }

    /// When its pipe closes (soma-flow killed), the guardian kills the groups still
    /// listed, and only those.
    #[test]
    fn the_guardian_kills_the_groups_still_listed_when_its_pipe_closes() {
        let (mut guardian, mut pipe) = spawn_guardian().unwrap();
        let (mut kept, mut ended, mut other) = (sleeper(), sleeper(), sleeper());
        for line in [
            format!("+{}", kept.id()),
            format!("+{}", ended.id()),
            "-12345678".to_string(),
            format!("+{}", other.id()),
            format!("-{}", ended.id()),
        ] {
            writeln!(pipe, "{line}").unwrap();
        }
        drop(pipe);
        guardian.wait().unwrap();
        assert!(kept.try_wait().unwrap().is_some() || !running(kept.id() as i32));
        assert!(other.try_wait().unwrap().is_some() || !running(other.id() as i32));
        assert!(
            ended.try_wait().unwrap().is_none(),
            "a released group was killed"
        );
        for mut c in [kept, ended, other] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
