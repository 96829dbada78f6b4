//! Compiles the sample bundle again and again with the previous result still alive, the way a
//! scanner reloads (the serving bundle lives until the new one is swapped in), and prints how
//! long each compile took. The first compile builds every DFA; the later ones are what a
//! reload costs. Run from the repository root:
//!
//! ```sh
//! cargo run --release -p pd-engine --example recompile           # 6 compiles
//! N=3 cargo run --release -p pd-engine --example recompile       # N compiles
//! ```

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let paths = vec![PathBuf::from("config/samples")];
    let limits = pd_engine::limits::Limits::default();
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut serving = None;
    for i in 0..n {
        let started = Instant::now();
        let pack = pd_engine::bundle::build(&paths, None, &limits)
            .map_err(|e| format!("the sample bundle does not compile: {:?}", e.detail))?;
        println!(
            "compile {i}: {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        // Dropped only once the next one is built, as a reload replaces the serving bundle.
        serving = Some(pack);
    }
    drop(serving);
    Ok(())
}
