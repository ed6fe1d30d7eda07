//! A real PostgreSQL for tests: one throwaway cluster per test process, one database per test.
//!
//! [`database`] gives a test a fresh, empty database. The first call in a process starts a
//! cluster — `initdb` + `pg_ctl` from `PATH` or `/usr/lib/postgresql/*/bin`, as the
//! `postgres` user when running as root (initdb refuses root), in a temp dir under `/tmp`,
//! listening on a free loopback port with `fsync=off`, password authentication over TCP —
//! or, when `DOVETAIL_TEST_PG_URL` is set, creates the databases on that server instead
//! (they are left there).
//!
//! **Cleanup** is a watchdog, not an exit hook: a `sh` child reads its stdin, whose write
//! end only this process holds; when the process ends however it ends (tests done, a panic,
//! `abort`, `SIGKILL`), the kernel closes that end, `read` returns, and the watchdog stops
//! the cluster and removes its directory. An `atexit` hook would need `unsafe` (denied in
//! this workspace) and never runs on `SIGKILL` or `abort`. The watchdog ignores `SIGINT`
//! and has its own process group, so a Ctrl-C of `cargo test` still cleans up.
//!
//! **No PostgreSQL** never counts as a pass: [`database`] panics saying how to install it,
//! unless `DOVETAIL_ALLOW_NO_PG=1`, when it prints a loud `SKIPPED` line, appends the test's
//! name to the file named by `DOVETAIL_PG_SKIP_LOG` (how `cargo xtask ci` counts them) and
//! returns `None`.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Names a server to create test databases on instead of starting a cluster.
pub const URL_ENV: &str = "DOVETAIL_TEST_PG_URL";
/// `1`: where no PostgreSQL exists, PG tests print SKIPPED and return instead of failing.
pub const ALLOW_NO_PG_ENV: &str = "DOVETAIL_ALLOW_NO_PG";
/// A file each skipped PG test appends its name to.
pub const SKIP_LOG_ENV: &str = "DOVETAIL_PG_SKIP_LOG";
/// A directory to take `initdb` and `pg_ctl` from instead of searching (one version of several).
pub const BIN_ENV: &str = "DOVETAIL_TEST_PG_BIN";

/// One test's own database.
#[derive(Debug, Clone)]
pub struct TestDb {
    url: String,
    host: String,
    port: u16,
    name: String,
    /// The throwaway cluster's random password; tests compare output against it.
    password: String, // tidy: not-secret
}

impl TestDb {
    /// `postgres://user:password@host:port/name`.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The server's host.
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The password in [`TestDb::url`] (for tests that check it never shows).
    pub fn password(&self) -> &str {
        &self.password
    }
    /// The URL with another password (for wrong-password tests).
    pub fn url_with_password(&self, password: &str) -> String {
        self.url.replacen(&format!(":{}@", self.password), &format!(":{password}@"), 1)
    }
}

/// The server every database of this process is created on.
struct Server {
    /// `postgres://user:password@host:port` (no database).
    base: String,
    host: String,
    port: u16,
    password: String, // tidy: not-secret
    /// How the test support itself connects to create databases: the cluster's Unix socket
    /// when it started one (works under a `hostssl`-only `pg_hba.conf`), else `base`.
    admin: String,
    /// A cluster this process started: how to stop and start it again.
    ctl: Option<Ctl>,
    /// The watchdog's stdin: dropped only when the process ends (see the module docs).
    _watchdog: Option<Mutex<ChildStdin>>,
}

/// `pg_ctl` for a cluster this process started.
struct Ctl {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    options: String,
    root: bool,
}

/// A fresh database for the test `test`, or `None` when no PostgreSQL exists and
/// `DOVETAIL_ALLOW_NO_PG=1` (see the module docs); panics when no PostgreSQL exists
/// otherwise, or when the server cannot be started.
pub fn database(test: &str) -> Option<TestDb> {
    static SERVER: OnceLock<Result<Server, Missing>> = OnceLock::new();
    let server = match SERVER.get_or_init(server) {
        Ok(s) => s,
        Err(missing) => return skip(test, missing),
    };
    Some(create(server, test))
}

/// A fresh database named after `test` on `server`.
fn create(server: &Server, test: &str) -> TestDb {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let slug: String =
        test.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(30).collect();
    let name = format!("dt_{}_{n}_{slug}", std::process::id());
    let admin = server.admin.clone();
    let sql = format!("CREATE DATABASE \"{name}\"");
    // On a thread of its own: callers may be inside a runtime already.
    let created = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let (client, conn) =
                tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
            let task = tokio::spawn(conn);
            client.batch_execute(&sql).await.map_err(|e| e.to_string())?;
            drop(client);
            let _ = task.await;
            Ok::<(), String>(())
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the thread creating it panicked".into()));
    if let Err(e) = created {
        panic!("cannot create the test database `{name}` on {}:{}: {e}", server.host, server.port);
    }
    TestDb {
        url: format!("{}/{name}", server.base),
        host: server.host.clone(),
        port: server.port,
        name,
        password: server.password.clone(),
    }
}

/// Why there is no server: no binaries and no URL.
#[derive(Debug)]
struct Missing(String);

fn skip(test: &str, missing: &Missing) -> Option<TestDb> {
    if std::env::var(ALLOW_NO_PG_ENV).as_deref() != Ok("1") {
        panic!(
            "\n\n!!! PostgreSQL test `{test}` cannot run: {}.\n!!! Install PostgreSQL (Debian: `apt-get install -y \
             postgresql`), or set {URL_ENV}=postgres://user:password@host:port to use a server you have, or set \
             {ALLOW_NO_PG_ENV}=1 to skip PostgreSQL tests (they are then reported as not run).\n",
            missing.0
        );
    }
    eprintln!("!!! SKIPPED PostgreSQL test `{test}`: {} ({ALLOW_NO_PG_ENV}=1)", missing.0);
    if let Ok(log) = std::env::var(SKIP_LOG_ENV) {
        let line = format!("{test}\n");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
    None
}

fn server() -> Result<Server, Missing> {
    if let Ok(url) = std::env::var(URL_ENV) {
        return Ok(from_url(&url));
    }
    let Some(bin) = find_bin() else {
        return Err(Missing(format!("no `initdb` on PATH or in /usr/lib/postgresql/*/bin (or in {BIN_ENV})")));
    };
    Ok(start(&bin, &ClusterOptions::default())
        .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL from {}: {e}", bin.display())))
}

/// A server given by URL: `postgres://user:password@host:port[/db][?...]`.
fn from_url(url: &str) -> Server {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let password = userinfo.split_once(':').map(|(_, p)| p.to_owned()).unwrap_or_default();
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    let scheme = url.split_once("://").map_or("postgres", |(s, _)| s);
    Server {
        base: format!("{scheme}://{authority}"),
        admin: format!("{scheme}://{authority}/postgres"),
        host: host.to_owned(),
        port: port.parse().unwrap_or(5432),
        password,
        ctl: None,
        _watchdog: None,
    }
}

/// The directory of `initdb` and `pg_ctl`: from PATH (symlinks resolved, Debian links only
/// some tools there), else the newest `/usr/lib/postgresql/<version>/bin`.
fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        let dir = PathBuf::from(dir);
        return (dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()).then_some(dir);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("initdb"))
            .find(|p| p.is_file())
            .and_then(|p| p.canonicalize().ok())
    });
    let with_ctl = |initdb: PathBuf| initdb.parent().filter(|d| d.join("pg_ctl").is_file()).map(Path::to_path_buf);
    if let Some(dir) = on_path.and_then(with_ctl) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The `postgres` user's uid and gid.
fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id").args([flag, "postgres"]).output().map_err(|e| format!("running `id`: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| "running as root, and there is no `postgres` user to run initdb as".to_owned())
    };
    Ok((id("-u")?, id("-g")?))
}

fn start(bin: &Path, extra: &ClusterOptions) -> Result<Server, String> {
    let root = is_root();
    let dir = tempfile::Builder::new().prefix("dovetail-pg.").tempdir_in("/tmp").map_err(|e| e.to_string())?.keep();
    let password = format!("pw{:032x}", random());
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, &password).map_err(|e| e.to_string())?;
    let as_pg = |program: PathBuf| -> Command {
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    };
    if root {
        let (uid, gid) = postgres_ids()?;
        for p in [&dir, &pwfile] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", p.display()))?;
        }
    }
    let data = dir.join("data");
    let mut initdb = as_pg(bin.join("initdb"));
    initdb.arg("-D").arg(&data).args(["-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"]);
    initdb.args(["--auth-local=trust", "--auth-host=scram-sha-256"]).arg(format!("--pwfile={}", pwfile.display()));
    run(initdb, "initdb")?;
    extra.install(&data, root)?;
    let port = free_port()?;
    // The watchdog first, so a failed start is cleaned up too.
    let ctl = bin.join("pg_ctl");
    let prefix = if root { "runuser -u postgres -- " } else { "" };
    let script = format!(
        "trap '' INT TERM HUP; read _ignored; {prefix}'{}' -D '{}' -m immediate -t 10 stop >/dev/null 2>&1; rm -rf '{}'",
        ctl.display(),
        data.display(),
        dir.display()
    );
    let mut watchdog = {
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting the cleanup watchdog: {e}"))?
    };
    let stdin = watchdog.stdin.take().ok_or("the watchdog has no stdin")?;
    let mut options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300",
        dir.display()
    );
    for setting in &extra.settings {
        options.push_str(&format!(" -c {setting}"));
    }
    let ctl = Ctl { bin: bin.to_owned(), data, log: dir.join("log"), options, root };
    ctl.pg_ctl("start")?;
    let host = "127.0.0.1".to_owned();
    Ok(Server {
        base: format!("postgres://postgres:{password}@{host}:{port}"),
        admin: format!("host={} port={port} user=postgres dbname=postgres", dir.display()),
        host,
        port,
        password,
        ctl: Some(ctl),
        _watchdog: Some(Mutex::new(stdin)),
    })
}

/// Runs `cmd`; its output in the error when it fails.
fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

impl Ctl {
    /// `pg_ctl ACTION` (`start`, `stop`, `restart`), waiting until it is done.
    fn pg_ctl(&self, action: &str) -> Result<(), String> {
        let program = self.bin.join("pg_ctl");
        let mut cmd = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.arg("-D").arg(&self.data).arg("-l").arg(&self.log).args(["-w", "-t", "60", "-m", "fast"]);
        cmd.args(["-o", &self.options, action]).stdout(Stdio::null());
        run(cmd, &format!("pg_ctl {action}")).map_err(|e| {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            format!("{e}\n{log}")
        })
    }
}

/// How a [`Cluster`] of a test's own differs from the shared one.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `name=value` server settings (`ssl=on`).
    pub settings: Vec<String>,
    /// The whole `pg_hba.conf`, instead of initdb's.
    pub hba: Option<String>,
    /// Files written into the data directory (certificates, keys), readable by the server only.
    pub files: Vec<(String, Vec<u8>)>,
}

impl ClusterOptions {
    /// TLS on, with `cert_pem` and `key_pem` as the server's certificate and key; with
    /// `only_tls`, `pg_hba.conf` lets TCP clients in over TLS only (`hostssl`).
    pub fn tls(cert_pem: &str, key_pem: &str, only_tls: bool) -> Self {
        let tcp = if only_tls { "hostssl" } else { "host" };
        ClusterOptions {
            settings: vec!["ssl=on".into(), "ssl_cert_file=server.crt".into(), "ssl_key_file=server.key".into()],
            hba: Some(format!("local all all trust\n{tcp} all all 127.0.0.1/32 scram-sha-256\n")),
            files: vec![
                ("server.crt".into(), cert_pem.as_bytes().to_vec()),
                ("server.key".into(), key_pem.as_bytes().to_vec()),
            ],
        }
    }

    fn install(&self, data: &Path, root: bool) -> Result<(), String> {
        let mut files = self.files.clone();
        if let Some(hba) = &self.hba {
            files.push(("pg_hba.conf".into(), hba.as_bytes().to_vec()));
        }
        let ids = if root { Some(postgres_ids()?) } else { None };
        for (name, bytes) in files {
            use std::os::unix::fs::PermissionsExt;
            let path = data.join(name);
            std::fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
            if let Some((uid, gid)) = ids {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// A throwaway cluster of one test's own, for what would disturb the shared one's other
/// tests: restarting it, or other settings ([`ClusterOptions`]: TLS, `pg_hba.conf`). Stopped
/// and removed by its watchdog when the process ends, like the shared one. Always started
/// from local binaries (`DOVETAIL_TEST_PG_URL` cannot be restarted from here). Dropping it
/// stops and removes it: keep it while its databases are used.
pub struct Cluster {
    server: Server,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("port", &self.server.port).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts a cluster for `test` with `options`; `None` (or a panic) when no PostgreSQL
    /// exists, as [`database`] does.
    pub fn start(test: &str, options: &ClusterOptions) -> Option<Cluster> {
        let Some(bin) = find_bin() else {
            let missing = Missing(format!("no `initdb` on PATH or in /usr/lib/postgresql/*/bin (or in {BIN_ENV})"));
            return skip(test, &missing).map(|_| unreachable!("skip never gives a database"));
        };
        let server = start(&bin, options)
            .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL from {}: {e}", bin.display()));
        Some(Cluster { server })
    }

    /// A fresh database on this cluster.
    pub fn database(&self, test: &str) -> TestDb {
        create(&self.server, test)
    }

    /// A superuser conninfo for `db` over the cluster's Unix socket (no TLS, whatever
    /// `pg_hba.conf` asks of TCP clients), for a test's own statements.
    pub fn socket_url(&self, db: &TestDb) -> String {
        self.server.admin.replace("dbname=postgres", &format!("dbname={}", db.name()))
    }

    /// Stops the server (`pg_ctl stop -m fast`: every session ends), waiting until it is down.
    pub fn stop(&self) {
        self.ctl().pg_ctl("stop").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the stopped server again, on the same port, waiting until it accepts connections.
    pub fn start_again(&self) {
        self.ctl().pg_ctl("start").unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`Cluster::stop`] then [`Cluster::start_again`].
    pub fn restart(&self) {
        self.ctl().pg_ctl("restart").unwrap_or_else(|e| panic!("{e}"));
    }

    fn ctl(&self) -> &Ctl {
        self.server.ctl.as_ref().unwrap_or_else(|| unreachable!("a Cluster always started its server"))
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// 128 random bits, from the OS (no password is ever guessable from the time).
fn random() -> u128 {
    let mut buf = [0u8; 16];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() ^ u128::from(std::process::id());
    }
    u128::from_le_bytes(buf)
}

/// A test CA and a server certificate it signed, as PEM (see [`test_certs`]).
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The CA certificate: what a client's `sslrootcert` trusts.
    pub ca_pem: String,
    /// The server's certificate.
    pub cert_pem: String,
    /// The server's private key (PKCS#8). Made for this test and thrown away with it.
    pub key_pem: String, // tidy: not-secret
}

/// A fresh CA (`dovetail test CA`) and a server certificate it signed for the DNS `names`.
pub fn test_certs(names: &[&str]) -> TestCerts {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let fail = |e: rcgen::Error| -> ! { panic!("generating test certificates: {e}") };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail(e));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "dovetail test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let ca_cert = ca.self_signed(&ca_key).unwrap_or_else(|e| fail(e));
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut server = CertificateParams::new(names.clone()).unwrap_or_else(|e| fail(e));
    server.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    let key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let cert = server.signed_by(&key, &Issuer::new(ca, ca_key)).unwrap_or_else(|e| fail(e));
    TestCerts { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}
