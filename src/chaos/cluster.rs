//! The processes of one chaos run, each its own OS process: a PostgreSQL cluster (initdb on a
//! free port), a Redis, the sandbox, a `web` and N `worker`s of this very binary. Every
//! process logs to a file in the run's directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A free TCP port on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something listens on `port`.
pub fn wait_port(port: u16, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > limit {
            bail!("nothing listens on port {port} after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status();
}

/// One child process with its log file.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    env: HashMap<String, String>,
    log: PathBuf,
    child: Option<Child>,
    /// Whether to run it as the `postgres` user (initdb and postgres refuse root).
    as_postgres: bool,
}

impl Proc {
    /// A process, not started yet.
    pub fn new(name: &str, program: &Path, args: &[&str], dir: &Path) -> Self {
        Proc {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: HashMap::new(),
            log: dir.join(format!("{name}.log")),
            child: None,
            as_postgres: false,
        }
    }

    /// With exactly this environment (nothing inherited but PATH).
    pub fn env(mut self, env: HashMap<String, String>) -> Self {
        self.env = env;
        self
    }

    fn command(&self) -> Command {
        let mut command = if self.as_postgres && running_as_root() {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ]);
            c.arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        };
        command.args(&self.args);
        if !self.env.is_empty() {
            command.env_clear().envs(&self.env);
            if let Ok(path) = std::env::var("PATH") {
                command.env("PATH", path);
            }
        }
        command
    }

    /// Starts it (again), appending to its log.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// kill -9, and reaped.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A signal (TERM, INT), then waits up to `limit` for the exit; kill -9 after that.
    pub fn stop(&mut self, sig: &str, limit: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, sig);
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Started and not exited.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_9();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// The newest installed PostgreSQL's `name` (Debian keeps them under /usr/lib/postgresql).
fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin").join(name))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from(name))
}

/// A PostgreSQL cluster of the run's own.
pub struct Postgres {
    pub port: u16,
    proc: Proc,
}

impl Postgres {
    /// initdb in `dir/pg` and start it on a free port.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let data = dir.join("pg");
        std::fs::create_dir_all(&data)?;
        if running_as_root() {
            let _ = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir)
                .status();
            let _ = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&data)
                .status();
        }
        let data_arg = data.to_string_lossy().into_owned();
        let mut initdb = Proc::new(
            "initdb",
            &pg_bin("initdb"),
            &[
                "--no-sync",
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "-D",
                &data_arg,
            ],
            dir,
        );
        initdb.as_postgres = true;
        let status = initdb
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            bail!("initdb failed (is Debian's postgresql installed?)");
        }
        let port = free_port()?;
        let port_arg = port.to_string();
        let mut proc = Proc::new(
            "postgres",
            &pg_bin("postgres"),
            &[
                "-D",
                &data_arg,
                "-p",
                &port_arg,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            dir,
        );
        proc.as_postgres = true;
        let mut pg = Postgres { port, proc };
        pg.resume()?;
        Ok(pg)
    }

    /// `pg_ctl stop -m fast`: every connection is cut.
    pub fn stop_fast(&mut self) {
        self.proc.stop("INT", Duration::from_secs(30));
    }

    /// Starts it again on the same port.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.proc.start()?;
        wait_port(self.port, Duration::from_secs(30))
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

/// A Redis of the run's own, with an append-only file.
pub struct Redis {
    pub port: u16,
    data: PathBuf,
    proc: Proc,
}

impl Redis {
    /// Starts `redis-server` on a free port with AOF (`appendfsync everysec`).
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let data = dir.join("redis");
        std::fs::create_dir_all(&data)?;
        let port = free_port()?;
        let (port_arg, data_arg) = (port.to_string(), data.to_string_lossy().into_owned());
        let proc = Proc::new(
            "redis",
            Path::new("redis-server"),
            &[
                "--port",
                &port_arg,
                "--bind",
                "127.0.0.1",
                "--dir",
                &data_arg,
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ],
            dir,
        );
        let mut redis = Redis { port, data, proc };
        redis.resume()?;
        Ok(redis)
    }

    /// SIGTERM: Redis flushes its AOF and exits; the data comes back with it.
    pub fn terminate(&mut self) {
        self.proc.stop("TERM", Duration::from_secs(20));
    }

    /// kill -9 and the data directory emptied: streams, groups, delayed retries and schedule
    /// marks are gone, as with a Redis that has no persistence.
    pub fn crash_and_forget(&mut self) {
        self.proc.kill_9();
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::create_dir_all(&self.data);
    }

    /// Starts it again on the same port.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.proc.start()?;
        wait_port(self.port, Duration::from_secs(20))
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
