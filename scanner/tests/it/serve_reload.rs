//! `serve`'s hot reload under bad and hostile sources (issue 12, findings 4 and 5), run for
//! real on a loopback port: every refused source set leaves the last good bundle serving and
//! says why on `/readyz` — bounded, naming the file and line, quoting nothing from any file.
//! Every wait below is a liveness bound, not a speed target.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;

const GOOD: &str =
    "version: '1'\nrules:\n- {id: evil, category: other, severity: low, weight: 70, regex: 'evil'}\n";

fn readyz(s: &Server) -> serde_json::Value {
    s.request("GET", "/readyz", &[], b"").json()
}

/// Writes `text` to `dir/name` in one step (write a hidden file, rename), as editors and kubelet
/// do, so a test controls exactly which states the watcher can see.
fn put(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".tmp-{name}"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Waits until `/readyz` reports a reload error and returns it, checking that the bundle
/// served meanwhile is still `hash`.
fn refusal(s: &Server, hash: &str) -> String {
    refusal_saying(s, hash, "")
}

/// [`refusal`], waiting for an error that contains `part`: when a test writes several files,
/// the watcher may load the state between two writes first and refuse it for its own reason.
fn refusal_saying(s: &Server, hash: &str, part: &str) -> String {
    let mut error = String::new();
    eventually("the refusal is reported", || {
        let r = readyz(s);
        assert_eq!(
            r["bundle"]["hash"], hash,
            "the last good bundle keeps serving: {r}"
        );
        match r["last_reload_error"].as_str() {
            Some(e) if e.contains(part) => {
                error = e.to_string();
                true
            }
            _ => false,
        }
    });
    error
}

fn blocks_evil(s: &Server) -> bool {
    s.scan(KEY_A, r#"{"prompt": "evil"}"#).json()["verdict"] == "block"
}

// ---- Finding 4: hot reload loads bad states silently ----

#[test]
fn an_extends_cycle_is_refused_by_hot_reload_and_a_fixed_pack_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "good.yaml", GOOD);
    let s = Server::start(&[], Some(d));
    let good = s.ready_hash().unwrap();

    // a <-> b: the default policy binds neither (each is extended), so they used to be
    // skipped without a word while `pd-scanner test` reported the cycle.
    // Two writes: a reload may see `a` alone first (`b` not loaded) and refuse that too.
    put(d, "a.yaml", "version: '1'\nextends: b\nrules: []\n");
    put(d, "b.yaml", "version: '1'\nextends: a\nrules: []\n");
    let e = refusal_saying(&s, &good, "forms a cycle");
    assert!(
        e.contains("a.yaml:1 (document 1): rule pack `a`: `extends` forms a cycle: a -> b -> a"),
        "{e}"
    );
    assert_eq!(metric(&s, "pd_bundle_reload_failing").as_deref(), Some("1"));
    assert!(blocks_evil(&s));

    // A pack extending itself.
    std::fs::remove_file(d.join("a.yaml")).unwrap();
    put(d, "b.yaml", "version: '1'\nextends: b\nrules: []\n");
    eventually("the self-extending pack is reported", || {
        readyz(&s)["last_reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("rule pack `b`: `extends` forms a cycle: b -> b"))
    });
    assert_eq!(s.ready_hash().unwrap(), good);

    // Fixed: it extends `good` now, adds a rule, and goes live.
    put(
        d,
        "b.yaml",
        "version: '2'\nextends: good\nrules:\n- {id: worse, category: other, severity: low, weight: 70, regex: 'worse'}\n",
    );
    eventually("the fixed pack goes live", || {
        let r = readyz(&s);
        r["last_reload_error"].is_null() && r["bundle"]["hash"] != good.as_str()
    });
    assert_eq!(
        s.scan(KEY_A, r#"{"prompt": "worse"}"#).json()["verdict"],
        "block"
    );
    assert_eq!(metric(&s, "pd_bundle_reload_failing").as_deref(), Some("0"));
    // Every bundle built is timed, the refused ones too: at least the two cycles and the fix,
    // with a positive total.
    let count = |name: &str| metric(&s, name).and_then(|v| v.parse::<f64>().ok());
    let built = count("pd_bundle_build_seconds_count").unwrap_or(0.0);
    assert!(built >= 3.0, "{built} bundles timed");
    assert!(count("pd_bundle_build_seconds_sum").is_some_and(|t| t > 0.0));
}

#[test]
fn a_pack_file_truncated_to_nothing_is_refused_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "good.yaml", GOOD);
    put(
        d,
        "other.yaml",
        "version: '1'\nrules:\n- {id: other, category: other, severity: low, weight: 70, keywords: {any: [zebra]}}\n",
    );
    let s = Server::start(&[], Some(d));
    let both = s.ready_hash().unwrap();
    std::fs::File::create(d.join("other.yaml")).unwrap();
    let e = refusal(&s, &both);
    assert!(e.contains("other.yaml: the file is empty"), "{e}");
    assert_eq!(
        s.scan(KEY_A, r#"{"prompt": "a zebra"}"#).json()["verdict"],
        "block",
        "the pack in the emptied file still applies"
    );
    // Whitespace and comments only are no better.
    put(d, "other.yaml", "\n  \n# nothing here\n");
    eventually("a comment-only file is refused too", || {
        metric(&s, "pd_bundle_reloads_total{result=\"rejected\"}").as_deref() == Some("2")
    });
    assert!(refusal(&s, &both).contains("other.yaml: the file is empty"));
}

/// The file is rewritten in place (same inode, truncated, then written a rule at a time, each
/// intermediate state a valid pack) faster than the watcher polls. Only the state that held
/// still for two polls may be served: the old one or the finished one, nothing between.
#[test]
fn a_file_rewritten_in_several_writes_is_never_served_half_way() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pack = d.join("p.yaml");
    let rule = |i: usize| {
        format!("- {{id: r{i}, category: other, severity: low, weight: 70, keywords: {{any: [word{i}]}}}}\n")
    };
    std::fs::write(&pack, format!("version: '1'\nrules:\n{}", rule(0))).unwrap();
    let s = Server::start(&["--reload-interval-ms", "1500"], Some(d));
    assert_eq!(readyz(&s)["rules"], 1);

    let seen = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (addr, seen, stop) = (s.addr.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = request(&addr, "GET", "/readyz", &[], b"").json();
                if let Some(n) = r["rules"].as_u64() {
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&n) {
                        seen.push(n);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // Two seconds of writing: longer than a poll interval, so a watcher that loads whatever
    // it sees changed would serve some state in between.
    const FINAL: usize = 20;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&pack)
        .unwrap();
    f.write_all(b"version: '2'\nrules:\n").unwrap();
    for i in 0..FINAL {
        std::thread::sleep(Duration::from_millis(100));
        f.write_all(rule(i).as_bytes()).unwrap();
    }
    drop(f);
    let done = Instant::now();
    eventually("the finished file goes live", || {
        readyz(&s)["rules"] == FINAL
    });
    eprintln!("live {:?} after the last write", done.elapsed());
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|&n| n == 1 || n == FINAL as u64),
        "bundles served while the file was written (rule counts): {seen:?}"
    );

    // Half a rule, left alone for longer than two polls: refused (as truncated), never served.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&pack)
        .unwrap();
    f.write_all(b"- {id: late, category: oth").unwrap();
    let hash = s.ready_hash().unwrap();
    let e = refusal(&s, &hash);
    assert!(e.contains("p.yaml:23:"), "{e}");
    assert!(e.contains("truncated"), "{e}");
    f.write_all(b"er, severity: low, weight: 70, keywords: {any: [late]}}\n")
        .unwrap();
    drop(f);
    eventually("the completed file goes live", || {
        readyz(&s)["rules"] == FINAL + 1
    });
}

// ---- Finding 5: limits on packs ----

#[test]
fn a_pack_file_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "good.yaml", GOOD);
    let s = Server::start(&[], Some(d));
    let good = s.ready_hash().unwrap();
    // 5 MiB, valid: comments around one rule.
    let padding = format!("# {}\n", "x".repeat(1022)).repeat(5 * 1024);
    put(
        d,
        "big.yaml",
        &format!(
            "{padding}version: '1'\nrules:\n- {{id: big, category: other, severity: low, weight: 5, keywords: {{any: [big]}}}}\n"
        ),
    );
    let e = refusal(&s, &good);
    assert!(
        e.contains("big.yaml: the file is ")
            && e.ends_with(" bytes; the limit is 4194304 (--max-pack-bytes)"),
        "{e}"
    );
}

#[test]
fn a_pack_with_too_many_rules_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "good.yaml", GOOD);
    let s = Server::start(&[], Some(d));
    let good = s.ready_hash().unwrap();
    let mut many = String::from("version: '1'\nrules:\n");
    for i in 0..5_001 {
        many.push_str(&format!(
            "- {{id: k{i}, category: other, severity: low, weight: 5, keywords: {{any: [kw{i}]}}}}\n"
        ));
    }
    put(d, "many.yaml", &many);
    let e = refusal(&s, &good);
    assert!(
        e.contains(
            "many.yaml:1 (document 1): rule pack `many`: the pack defines 5001 rules; the limit is 5000 (--max-pack-rules)"
        ),
        "{e}"
    );
}

#[test]
fn regexes_over_the_compiled_size_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "good.yaml", GOOD);
    let s = Server::start(&["--max-bundle-compiled-bytes", "4194304"], Some(d));
    let good = s.ready_hash().unwrap();
    // 13 bytes of source, a million NFA states: the per-regex limit.
    put(
        d,
        "nested.yaml",
        "version: '1'\nrules:\n- {id: nested, category: other, severity: low, weight: 5, regex: 'b{1000}{1000}'}\n",
    );
    let e = refusal(&s, &good);
    assert!(
        e.contains("nested.yaml:3 (document 1): rule pack `nested`, rule `nested`: regex compiles to more than 2097152 bytes"),
        "{e}"
    );
    // Each regex fits its own limit; fifty of them do not fit the bundle's.
    let mut wide = String::from("version: '1'\nrules:\n");
    for i in 0..50 {
        wide.push_str(&format!(
            "- {{id: w{i}, category: other, severity: low, weight: 5, regex: 'x\\w{{1000}}y{i}'}}\n"
        ));
    }
    std::fs::remove_file(d.join("nested.yaml")).unwrap();
    put(d, "wide.yaml", &wide);
    eventually("the bundle over its compiled budget is refused", || {
        readyz(&s)["last_reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("the compiled bundle exceeds 4194304 bytes"))
    });
    assert_eq!(s.ready_hash().unwrap(), good);
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_source_directory_is_refused_and_nothing_of_its_target_leaks() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.yaml");
    // A mapping: read as a pack, its key would be quoted by the parser's "unknown field".
    std::fs::write(&secret, format!("{CANARY}: 1\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "good.yaml", GOOD);
    let s = Server::start(&[], Some(d));
    let good = s.ready_hash().unwrap();
    std::os::unix::fs::symlink(&secret, d.join("leak.yaml")).unwrap();
    let e = refusal(&s, &good);
    assert!(
        e.contains("leak.yaml is a symlink to a file outside"),
        "{e}"
    );
    let body = String::from_utf8(s.request("GET", "/readyz", &[], b"").body).unwrap();
    assert!(!body.contains(CANARY) && !body.contains("secret"), "{body}");
    // The log says where the link points (the operator's business), still not what is there.
    let (_, log, _) = s.stop();
    let log = log.join("\n");
    assert!(log.contains("secret.yaml"), "{log}");
    assert!(!log.contains(CANARY), "{log}");
}

#[test]
fn many_bad_rules_make_a_bounded_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "good.yaml", GOOD);
    let s = Server::start(&[], Some(d));
    let good = s.ready_hash().unwrap();
    let mut bad = String::from("version: '1'\nrules:\n");
    for i in 0..1_000 {
        bad.push_str(&format!(
            "- {{id: bad{i}, category: other, severity: low, weight: 5, regex: '(unclosed{i}'}}\n"
        ));
    }
    put(d, "bad.yaml", &bad);
    let e = refusal(&s, &good);
    assert!(
        e.lines().next().is_some_and(|l| {
            l.ends_with("bad.yaml:3 (document 1): rule pack `bad`, rule `bad0`: invalid regex (a syntax error; `pd-scanner test` shows where)")
        }),
        "{e}"
    );
    assert!(
        e.ends_with("… and 990 more problem(s) (`pd-scanner test` lists them all)"),
        "{e}"
    );
    assert!(!e.contains("unclosed"), "the regexes are not quoted: {e}");
    let body = s.request("GET", "/readyz", &[], b"").body;
    assert!(body.len() < 4096, "{} bytes", body.len());
}

// ---- Issue 15, finding 5: a loaded pack the policy ignores is not a silent trap ----

#[test]
fn a_loaded_pack_no_policy_uses_is_named_on_readyz_and_in_the_log_until_it_is_bound() {
    // The samples plus a pack of one's own: `-f config/samples/ -f mine.yaml`, as one directory.
    let dir = tempfile::tempdir().unwrap();
    for sample in std::fs::read_dir(samples()).unwrap() {
        let sample = sample.unwrap().path();
        std::fs::copy(&sample, dir.path().join(sample.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("mine.yaml"), GOOD.replace("evil", "zebra")).unwrap();
    // The samples' policy `acme-chat` binds only `acme` (and what it extends).
    let s = Server::start(&[], Some(dir.path()));
    let r = readyz(&s);
    assert_eq!(
        r["ready"], true,
        "still ready: the policy's own packs serve: {r}"
    );
    assert_eq!(r["policy"], "acme-chat", "{r}");
    assert_eq!(r["unused_packs"], serde_json::json!(["mine"]), "{r}");
    let warning = r["warning"].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("policy `acme-chat` does not use the loaded pack(s) `mine`; it binds `acme`. Use --policy default"),
        "{r}"
    );
    let logged = s.log();
    assert!(
        logged.lines().any(|l| l.contains("\"WARN\"") && l.contains("does not use the loaded pack(s) `mine`")),
        "{logged}"
    );
    assert_eq!(
        s.scan(KEY_A, r#"{"prompt": "a zebra"}"#).json()["verdict"],
        "allow",
        "the unused pack does not apply"
    );
    drop(s);

    // With every pack bound, nothing to warn about.
    let s = Server::start(&["--policy", "default"], Some(dir.path()));
    let r = readyz(&s);
    assert_eq!(r["unused_packs"], serde_json::json!([]), "{r}");
    assert!(r["warning"].is_null(), "{r}");
    assert_eq!(
        s.scan(KEY_A, r#"{"prompt": "a zebra"}"#).json()["verdict"],
        "block"
    );
}
