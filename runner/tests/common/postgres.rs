//! A real PostgreSQL server for a test: Debian's PostgreSQL, a fresh cluster
//! in a temporary folder, listening on an address of 127.0.0.0/8 of the test's
//! own (and a Unix socket in that folder), without fsync; stopped and removed
//! when dropped. `initdb` refuses to run as root, so as root the cluster
//! belongs to the `postgres` user and its programs run through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub host: String,
    pub port: u16,
    as_root: bool,
}

/// The folder of PostgreSQL's server programs (the newest installed).
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server programs are not installed (/usr/lib/postgresql/*/bin/initdb): .ci/run installs Debian's `postgresql` package"
        )
    })
}

impl Postgres {
    /// Starts a new server; the superuser is `runner`, without a password
    /// over the socket and with password `secret-pw` over TCP. Without fsync
    /// and without waiting for its log at commit: a test's data needs no
    /// durability.
    pub fn start() -> Postgres {
        Postgres::start_with(false)
    }

    /// A server that flushes its log at every commit, as a production one
    /// does: for the figures of a benchmark.
    pub fn start_durable() -> Postgres {
        Postgres::start_with(true)
    }

    fn start_with(durable: bool) -> Postgres {
        Postgres::start_full(durable, false)
    }

    /// A server that speaks TLS too, with a certificate for its address signed
    /// by a test CA of its own ([`Postgres::ca`]; made with openssl).
    pub fn start_tls() -> Postgres {
        Postgres::start_full(false, true)
    }

    /// The PEM file of the CA that signed a TLS server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn start_full(durable: bool, tls: bool) -> Postgres {
        let bin = bin_dir();
        let dir = super::scratch("postgres");
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {} to postgres", dir.display());
        }
        let pg = Postgres {
            host: super::own_loopback(),
            port: 5432,
            bin,
            dir,
            as_root,
        };
        let pwfile = pg.dir.join("pw");
        std::fs::write(&pwfile, "secret-pw\n").unwrap();
        if as_root {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pwfile)
                .status();
        }
        let data = pg.dir.join("data");
        let out = pg
            .program("initdb")
            .args(["-D", data.to_str().unwrap()])
            .args([
                "-U",
                "runner",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let quick = if durable {
            ""
        } else {
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        };
        let ssl = if tls {
            pg.certificates();
            format!(
                " -c ssl=on -c ssl_cert_file={0}/server.pem -c ssl_key_file={0}/server.key",
                pg.dir.display()
            )
        } else {
            String::new()
        };
        let quick = format!("{quick}{ssl}");
        let options = format!(
            "-c listen_addresses={} -p {} -k {}{quick} -c max_connections=200",
            pg.host,
            pg.port,
            pg.dir.display()
        );
        let out = pg
            .program("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
            ])
            .arg(format!("--log={}", pg.dir.join("log").display()))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(pg.dir.join("log")).unwrap_or_default()
        );
        pg
    }

    /// A test CA and a server certificate for the server's address (its IP
    /// in subjectAltName), the key readable by the cluster's owner only.
    fn certificates(&self) {
        let dir = &self.dir;
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir)
                .args(args)
                .output()
                .expect("openssl (Debian's `openssl` package)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=runner test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    &format!("/CN={}", self.host),
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("server.ext"),
            format!(
                "subjectAltName=IP:{}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
                self.host
            ),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if self.as_root {
            for f in ["server.key", "server.pem", "ca.pem"] {
                let _ = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(dir.join(f))
                    .status();
            }
        }
    }

    /// One of the server's programs, as the cluster's owner.
    fn program(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// `postgres://runner:secret-pw@HOST:5432/DB`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://runner:secret-pw@{}:{}/{db}",
            self.host, self.port
        )
    }

    /// Creates database `name` (empty).
    pub fn create_db(&self, name: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }

    /// Runs `sql` in database `db` with psql; its output (unaligned, no headers).
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// [`Postgres::sql`], with psql's complaint when it fails.
    pub fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", self.dir.to_str().unwrap(), "-U", "runner", "-d", db])
            .args(["-c", sql])
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .program("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
