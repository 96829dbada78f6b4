//! The process's allocator: mimalloc, set up so that memory freed after a bundle reload goes
//! back to the system.
//!
//! A reload compiles the new bundle beside the one serving (about two million allocations:
//! regex parses, NFAs, automata), installs it, and drops the old one; the live heap peaks near
//! 24 MiB (heaptrack, 20 reloads). What stays resident afterwards depends on the allocator:
//!
//! - **musl's malloc** is compact but costs the scan service ~1.7× CPU per request.
//! - **glibc's malloc** hands threads separate arenas as they contend; reloads run on
//!   whichever blocking-pool thread is free, so freed pages spread over arenas and stay
//!   resident (an idle scanner went from 29 MiB to a peak of 69–79 MiB within 12–40 reloads).
//! - **mimalloc with its defaults** (the container images until 2026-12-01) kept more still. It
//!   asks for transparent huge pages, so one live byte keeps 2 MiB resident, and it gives freed
//!   arena memory back only 100 ms after the free and only when a later allocation passes by,
//!   which an idle scanner never makes. The image binary peaked at 80–90 MiB under
//!   `bench/load.sh`, whose last phase reloads the bundle every 2 s.
//!
//! So every build uses mimalloc (what `bench/load.sh` measures on a host build is what the
//! image ships), built without huge-page requests (the `no_thp` feature), with transparent huge
//! pages also switched off for the process (a host whose THP mode is `always` uses them unasked),
//! and with freed memory given back at once ([`PURGE_DELAY_MS`]). The image binary then peaked
//! at 49–56 MiB in the same runs; docs/src/performance.md has the figures.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Milliseconds mimalloc waits before it gives a freed page back: its default is 10 (×10 for
/// arena memory), and the purge then waits for a later allocation. The environment variable
/// `MIMALLOC_PURGE_DELAY` still wins when set.
const PURGE_DELAY_MS: std::ffi::c_long = 0;

/// `mi_option_purge_delay` (legacy name `reset_delay`) in mimalloc 2's `mi_option_t`, which
/// `libmimalloc-sys` does not name; a test checks it is the option whose default is 10.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Environment variables through which mimalloc reads the purge delay (the current name and
/// the legacy one) when the process starts.
const PURGE_DELAY_ENV: [&str; 2] = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"];

/// Whether the environment sets the purge delay. mimalloc matches its variables' names
/// without regard to case, so this does too.
fn purge_delay_from_env() -> bool {
    std::env::vars_os().any(|(name, _)| {
        name.to_str()
            .is_some_and(|n| PURGE_DELAY_ENV.iter().any(|v| n.eq_ignore_ascii_case(v)))
    })
}

/// Applies the settings above. Called first thing in `main`: mimalloc reads the purge delay
/// each time it frees memory, and the THP flag covers the process's memory from then on.
pub fn tune() {
    if !purge_delay_from_env() {
        // SAFETY: `mi_option_set` stores one value in mimalloc's option table (an atomic
        // write); the option is a valid enumerator of the linked mimalloc's `mi_option_t`.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers; it sets a flag on this
    // process's memory map. A failure (a kernel older than 3.15) only keeps the host's THP
    // behaviour, so the result is not checked.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads one option value.
        unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    /// One test for all of `tune`: its settings are the process's, so a second test calling it
    /// in the same process (`cargo test` runs tests as threads of one) would see them already set.
    #[test]
    fn tune_sets_the_purge_delay_unless_the_environment_does_and_switches_thp_off() {
        let from_env = purge_delay_from_env();
        let before = purge_delay();
        tune();
        if from_env {
            assert_eq!(purge_delay(), before);
        } else {
            // mimalloc's default: this is the purge delay (its neighbours in the enum default
            // to 1 and 0).
            assert_eq!(before, 10);
            assert_eq!(purge_delay(), PURGE_DELAY_MS);
        }
        #[cfg(target_os = "linux")]
        // SAFETY: PR_GET_THP_DISABLE takes no pointers and returns the flag.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
            1
        );
    }
}
