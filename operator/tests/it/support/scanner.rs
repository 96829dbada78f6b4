//! A local `pd-scanner` started exactly like the scanner pod of a rendered policy: the
//! Deployment's args, with `/etc/pd` mapped to a temporary directory laid out like the pod's
//! volumes and the listener moved to a free loopback port. Shared by the operator's
//! `scanner_pod` tests and, through `#[path]`, by pd-e2e's `probe_script` tests, so the two
//! cannot drift apart in how they run the pod's command line.

// Each of the two test binaries that include this file uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pd_operator::builders::Children;

/// The `pd-scanner` binary of the same target directory, if it was built (`cargo test
/// --workspace` builds it).
pub fn scanner_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let bin = dir.join(format!("pd-scanner{}", std::env::consts::EXE_SUFFIX));
    bin.is_file().then_some(bin)
}

/// A running scanner; killed on drop.
pub struct LocalScanner {
    pub child: Child,
    /// `127.0.0.1:<port>`, from the scanner's own `listening` log line.
    pub addr: String,
    /// The pod's `/etc/pd`: `bundle/bundle.json`, `keys/<key id>`, `hmac/key`.
    pub etc: PathBuf,
    /// Holds `etc`; free for a test's other files.
    pub tmp: tempfile::TempDir,
}

impl LocalScanner {
    /// Starts `bin` with `children`' Deployment args and bundle, one API key `key_id` = `token`,
    /// and `stdout` (the audit chain) where the caller wants it. Panics, with the scanner's
    /// stderr, when it does not start listening within a minute.
    pub fn start(
        bin: &Path,
        children: &Children,
        key_id: &str,
        token: &str,
        stdout: Stdio,
    ) -> LocalScanner {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc/pd");
        for d in ["bundle", "keys", "hmac"] {
            std::fs::create_dir_all(etc.join(d)).unwrap();
        }
        std::fs::write(etc.join("bundle/bundle.json"), bundle_json(children)).unwrap();
        std::fs::write(etc.join("keys").join(key_id), token).unwrap();
        std::fs::write(etc.join("hmac/key"), "0123456789abcdef0123456789abcdef").unwrap();
        let pod = children
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        let args: Vec<String> = pod.containers[0]
            .args
            .clone()
            .unwrap()
            .into_iter()
            .map(|a| {
                a.replace("/etc/pd", etc.to_str().unwrap())
                    .replace("0.0.0.0:8080", "127.0.0.1:0")
            })
            .collect();
        let mut child = Command::new(bin)
            .args(&args)
            .env_remove("PD_FILES")
            .env_remove("PD_POLICY")
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["fields"]["message"] == "listening" {
                        let _ = tx.send(Ok(v["fields"]["addr"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string()));
                    }
                }
                seen.push(line);
            }
            let _ = tx.send(Err(seen));
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(a)) => a,
            other => {
                let _ = child.kill();
                panic!("scanner did not start with args {args:?}: {other:?}");
            }
        };
        LocalScanner {
            child,
            addr,
            etc,
            tmp,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Where the bundle is mounted: writing it is what kubelet does when the ConfigMap changes.
    pub fn bundle_file(&self) -> PathBuf {
        self.etc.join("bundle/bundle.json")
    }

    /// SIGTERM, as the kubelet sends (the scanner drains and flushes its audit writer), and
    /// waits for the exit.
    pub fn terminate(&mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for LocalScanner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bundle the operator writes into the policy's ConfigMap.
pub fn bundle_json(children: &Children) -> String {
    children.config_map.data.as_ref().unwrap()["bundle.json"].clone()
}
