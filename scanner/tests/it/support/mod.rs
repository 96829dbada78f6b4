//! The harness of the `serve` tests: start `pd-scanner serve` for real on a loopback port
//! ([`Server`]) or run the service inside the test's runtime ([`in_process::Service`]), and
//! speak HTTP to it with a minimal client.
#![allow(dead_code)]

pub mod in_process;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEY_A: &str = "test-key-aaaaaaaaaaaaaaaa";
pub const KEY_B: &str = "test-key-bbbbbbbbbbbbbbbb";
pub const CANARY: &str = "CANARY-7f3e-do-not-leak";

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples")
}

/// A running server and what it printed.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn start(extra: &[&str], packs: Option<&Path>) -> Server {
        Server::start_env(extra, packs, &[])
    }

    pub fn start_env(extra: &[&str], packs: Option<&Path>, env: &[(&str, &Path)]) -> Server {
        Server::launch(extra, packs, env, true)
    }

    /// Like [`Server::start`], but nobody reads the server's stdout: a pipe that fills up.
    pub fn start_with_unread_stdout(extra: &[&str]) -> Server {
        Server::launch(extra, None, &[], false)
    }

    fn launch(
        extra: &[&str],
        packs: Option<&Path>,
        env: &[(&str, &Path)],
        read_stdout: bool,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("keys"),
            format!("# test keys\nclient-a={KEY_A}\nclient-b={KEY_B}\n"),
        )
        .unwrap();
        let packs = packs.map(Path::to_path_buf).unwrap_or_else(samples);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pd-scanner"));
        cmd.args([
            "-f",
            packs.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json"])
        .args(if extra.contains(&"--reload-interval-ms") {
            &[][..]
        } else {
            &["--reload-interval-ms", "100"][..]
        })
        .arg("--hmac-key-file")
        .arg(dir.path().join("hmac.key"))
        .args(extra)
        .env_remove("PD_FILES")
        .env_remove("PD_POLICY")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if !extra.contains(&"--no-auth") {
            cmd.arg("--keys").arg(dir.path().join("keys"));
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let err_lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["fields"]["message"] == "listening" {
                        let _ =
                            tx.send(v["fields"]["addr"].as_str().unwrap_or_default().to_string());
                    }
                }
                err_lines.lock().unwrap().push(line);
            }
        });
        let out_lines = stdout.clone();
        let pipe = child.stdout.take().unwrap();
        if read_stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    out_lines.lock().unwrap().push(line);
                }
            });
        } else {
            // Kept open and never read.
            std::mem::forget(pipe);
        }
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {:?}", stderr.lock().unwrap());
            }
        };
        Server {
            child,
            addr,
            stderr,
            stdout,
            dir,
        }
    }

    pub fn ready_hash(&self) -> Option<String> {
        let r = self.request("GET", "/readyz", &[], b"");
        r.json()["bundle"]["hash"].as_str().map(str::to_string)
    }

    /// Sends a signal (`TERM`, `HUP`, `KILL`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} {pid}");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> (Vec<String>, Vec<String>, tempfile::TempDir) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                break;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (out, err, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    request_on(
        TcpStream::connect(addr).unwrap(),
        addr,
        method,
        path,
        headers,
        body,
    )
}

/// [`request`] on a stream the caller connected (e.g. from another loopback address).
pub fn request_on(
    mut s: TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) and close before reading a large body; keep the answer.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let mut resp = parse_response(&raw);
    if resp
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        resp.body = dechunk(&resp.body);
    }
    resp
}

/// Reads a whole response (the server closes after it) from a raw stream.
pub fn read_response(s: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// A connection to `addr` from the loopback address `src` (Linux answers on all of
/// 127.0.0.0/8), so tests can be several clients.
pub fn connect_from(src: &str, addr: &str) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
        sock.connect(addr.parse().unwrap()).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// A running scanner the tests talk HTTP to: the real binary ([`Server`]) or `serve::run` in
/// this process ([`in_process::Service`]).
pub trait Endpoint {
    /// The API address, `127.0.0.1:PORT`.
    fn addr(&self) -> &str;

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.addr(), method, path, headers, body)
    }

    fn scan(&self, key: &str, body: &str) -> Resp {
        let auth = format!("Bearer {key}");
        self.request(
            "POST",
            "/v1/scan",
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            body.as_bytes(),
        )
    }
}

impl Endpoint for Server {
    fn addr(&self) -> &str {
        &self.addr
    }
}

pub fn metric(s: &impl Endpoint, name: &str) -> Option<String> {
    let m = String::from_utf8(s.request("GET", "/metrics", &[], b"").body).unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map(str::to_string)
}

/// Polls `f` until it holds; a liveness bound, not a speed target (the time is printed).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: not after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{what}: {:?}", start.elapsed());
}

/// A kubeconfig for a fake API server at `addr` (plain HTTP, a dummy token), with `namespace`
/// as the context's default, written into `dir`.
#[allow(dead_code)]
pub fn fake_kubeconfig(dir: &Path, addr: impl std::fmt::Display, namespace: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: 'http://{addr}'}}}}]\n\
             users: [{{name: fake, user: {{token: not-a-real-token}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: {namespace}}}}}]\n"
        ),
    )
    .unwrap();
    path
}
