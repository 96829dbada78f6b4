//! HTTP load client for `pd-scanner serve` (used by `bench/load.sh`).
//!
//! Keep-alive HTTP/1.1 over raw TCP, one task per connection. With rate 0 every connection
//! sends back to back (saturation); with a rate, requests are scheduled at fixed intervals and
//! latency is measured from the scheduled time, so a stalled server cannot hide its queueing
//! (no coordinated omission).
//!
//! usage: load ADDR KEY CONNECTIONS SECONDS RATE PROMPT_BYTES

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn prompt(bytes: usize) -> String {
    let base = "Could you help me plan a three-day trip to Lisbon in spring? I would like to see the old town and eat well. ";
    let mut s = String::new();
    while s.len() < bytes {
        s.push_str(base);
    }
    s.truncate(bytes);
    s
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

async fn connection(
    addr: String,
    request: Vec<u8>,
    until: Instant,
    interval: Option<Duration>,
) -> (Vec<u32>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let Ok(mut stream) = TcpStream::connect(&addr).await else {
        return (latencies, 1);
    };
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut next = Instant::now();
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
        let scheduled = next;
        if stream.write_all(&request).await.is_err() {
            errors += 1;
            break;
        }
        if read_response(&mut stream, &mut buf).await {
            latencies.push(u32::try_from(scheduled.elapsed().as_micros()).unwrap_or(u32::MAX));
        } else {
            errors += 1;
            break;
        }
        if let Some(iv) = interval {
            next += iv;
        }
    }
    (latencies, errors)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        eprintln!("usage: load ADDR KEY CONNECTIONS SECONDS RATE PROMPT_BYTES");
        std::process::exit(64);
    }
    let addr = args[1].clone();
    let key = &args[2];
    let conns: usize = args[3].parse().unwrap_or(32);
    let secs: u64 = args[4].parse().unwrap_or(10);
    let rate: f64 = args[5].parse().unwrap_or(0.0);
    let size: usize = args[6].parse().unwrap_or(1024);
    let body = serde_json::json!({ "prompt": prompt(size) }).to_string();
    let request = format!(
        "POST /v1/scan HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(conns as f64 / rate));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(connection(addr.clone(), request.clone(), until, interval)))
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        let i = ((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1));
        all.get(i).copied().unwrap_or(0)
    };
    println!(
        "{{\"connections\": {conns}, \"target_rate\": {rate}, \"requests\": {}, \"errors\": {errors}, \"rps\": {:.0}, \"p50_us\": {}, \"p99_us\": {}, \"max_us\": {}}}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0)
    );
}
