//! HTTP load client for `pd-scanner serve` (used by `bench/load.sh`).
//!
//! Keep-alive HTTP/1.1 over raw TCP, one task per connection. With rate 0 every connection
//! sends back to back (saturation); with a rate, requests are scheduled at fixed intervals,
//! each connection's schedule offset from the others' so the server sees an even stream
//! rather than all connections at once, and latency is measured from the scheduled time
//! whenever the connection was still waiting for the server then, so a stalled server cannot
//! hide its queueing (no coordinated omission). When the connection was idle at the scheduled
//! time, latency runs from the actual send: the client's timer wakes up to a millisecond late,
//! and that lateness is the client's, not the server's.
//!
//! Every request carries a different prompt ([`pd_scanner::synth`]): a server fed one
//! repeated text measures its automata's caches, not its speed on real traffic. The pool is
//! generated before the clock starts; if a run outlasts it, prompts repeat and the output says
//! how many requests did.
//!
//! usage: load ADDR KEY CONNECTIONS SECONDS RATE PROMPT_BYTES SEED POOL
//!   PROMPT_BYTES 0 = natural lengths (median ~350 B, mean ~500 B); SEED picks the texts
//!   (use another seed to warm up); POOL = number of distinct prompts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn requests(addr: &str, key: &str, bytes: usize, seed: u64, pool: usize) -> Vec<Vec<u8>> {
    let mut gen = pd_scanner::synth::PromptGen::new(seed);
    (0..pool)
        .map(|_| {
            let prompt = if bytes == 0 {
                gen.prompt()
            } else {
                gen.prompt_of_len(bytes)
            };
            let body = serde_json::json!({ "prompt": prompt }).to_string();
            format!(
                "POST /v1/scan HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect()
}

/// Reads one response; true when it was a 200.
async fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> bool {
    let mut have = 0usize;
    loop {
        let Ok(n) = stream.read(&mut buf[have..]).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        have += n;
        let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if have >= end + 4 + len {
            return head.starts_with("http/1.1 200");
        }
    }
}

/// Connection `index` of `conns` sends pool entries index, index + conns, index + 2·conns, ...
async fn connection(
    addr: String,
    pool: Arc<Vec<Vec<u8>>>,
    (index, conns): (usize, usize),
    (started, until): (Instant, Instant),
    interval: Option<Duration>,
) -> (Vec<(u32, u32)>, u64, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut repeated = 0u64;
    let mut next_request = index;
    let Ok(mut stream) = TcpStream::connect(&addr).await else {
        return (latencies, 1, 0);
    };
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    // Connection i of n starts i/n of an interval late: evenly spread arrivals, not bursts.
    let mut next = match interval {
        Some(iv) => started + iv.mul_f64(index as f64 / conns as f64),
        None => Instant::now(),
    };
    let mut previous_done = started;
    while Instant::now() < until {
        match interval {
            Some(_) => {
                let now = Instant::now();
                if next > now {
                    tokio::time::sleep(next - now).await;
                }
            }
            None => next = Instant::now(),
        }
        // From the schedule when the server still held this connection then (its delay is
        // queueing the server caused); from the send when the connection was idle (the delay
        // is this client's timer).
        let measured_from = if previous_done > next {
            next
        } else {
            Instant::now()
        };
        if next_request >= pool.len() {
            repeated += 1;
        }
        let request = &pool[next_request % pool.len()];
        next_request += conns;
        if stream.write_all(request).await.is_err() {
            errors += 1;
            break;
        }
        if read_response(&mut stream, &mut buf).await {
            let second = u32::try_from((measured_from - started).as_secs()).unwrap_or(u32::MAX);
            let latency = u32::try_from(measured_from.elapsed().as_micros()).unwrap_or(u32::MAX);
            latencies.push((second, latency));
            previous_done = Instant::now();
        } else {
            errors += 1;
            break;
        }
        if let Some(iv) = interval {
            next += iv;
        }
    }
    (latencies, errors, repeated)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 9 {
        eprintln!("usage: load ADDR KEY CONNECTIONS SECONDS RATE PROMPT_BYTES SEED POOL");
        std::process::exit(64);
    }
    let addr = args[1].clone();
    let key = &args[2];
    let conns: usize = args[3].parse().unwrap_or(32);
    let secs: u64 = args[4].parse().unwrap_or(10);
    let rate: f64 = args[5].parse().unwrap_or(0.0);
    let size: usize = args[6].parse().unwrap_or(0);
    let seed: u64 = args[7].parse().unwrap_or(1);
    let pool_size: usize = args[8].parse().unwrap_or(100_000).max(1);
    let pool = Arc::new(requests(&addr, key, size, seed, pool_size));
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(conns as f64 / rate));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            tokio::spawn(connection(
                addr.clone(),
                pool.clone(),
                (i, conns),
                (started, until),
                interval,
            ))
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    let mut repeated = 0;
    for t in tasks {
        if let Ok((l, e, r)) = t.await {
            all.extend(l);
            errors += e;
            repeated += r;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // p99 of each second of the run (by when each latency clock started): a stall that lasts a
    // moment, such as a bundle swap, shows in its own second instead of vanishing in the run.
    let mut by_second: Vec<Vec<u32>> = vec![Vec::new(); secs as usize + 1];
    for &(second, latency) in &all {
        if let Some(v) = by_second.get_mut(second as usize) {
            v.push(latency);
        }
    }
    let p99_by_second: Vec<String> = by_second
        .iter_mut()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.sort_unstable();
            let i = ((v.len() as f64 * 0.99) as usize).min(v.len() - 1);
            v[i].to_string()
        })
        .collect();
    let mut all: Vec<u32> = all.into_iter().map(|(_, l)| l).collect();
    all.sort_unstable();
    let pct = |p: f64| {
        let i = ((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1));
        all.get(i).copied().unwrap_or(0)
    };
    println!(
        "{{\"connections\": {conns}, \"target_rate\": {rate}, \"requests\": {}, \"errors\": {errors}, \"repeated_prompts\": {repeated}, \"rps\": {:.0}, \"p50_us\": {}, \"p99_us\": {}, \"max_us\": {}, \"p99_by_second_us\": [{}]}}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0),
        p99_by_second.join(", ")
    );
}
