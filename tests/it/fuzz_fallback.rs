//! The fuzz targets on stable Rust: every target's body (`c300x_bridge::fuzz`, the same code the
//! cargo-fuzz binaries run) on its corpus in fuzz/corpus/<target>, then on random mutations of
//! it (bit flips, inserted and repeated bytes, splices, cuts) for `FUZZ_SECONDS` per target
//! (default 1; scripts/fuzz.sh sets 30 when cargo-fuzz cannot run). No coverage guidance — the
//! same properties, checked blind. `FUZZ_TARGET` picks one target.

use std::path::Path;
use std::time::{Duration, Instant};

use c300x_bridge::fuzz::TARGETS;

/// xorshift64*: deterministic per target, so a failure names a reproducible run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut m = if seeds.is_empty() || rng.below(8) == 0 {
        (0..rng.below(256)).map(|_| rng.next() as u8).collect()
    } else {
        seeds[rng.below(seeds.len())].clone()
    };
    for _ in 0..=rng.below(4) {
        let len = m.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                m[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                let b = [
                    0u8,
                    0xff,
                    b'\r',
                    b'\n',
                    b'$',
                    b'%',
                    b'=',
                    b'&',
                    rng.next() as u8,
                ][rng.below(9)];
                m.insert(i, b);
            }
            2 if len > 0 => {
                let (a, b) = (rng.below(len), rng.below(len));
                let (a, b) = (a.min(b), a.max(b));
                let piece = m[a..b].to_vec();
                let at = rng.below(len + 1);
                m.splice(at..at, piece);
            }
            3 if len > 0 => m.truncate(rng.below(len)),
            4 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(other.len() + 1);
                m.extend_from_slice(&other[cut..]);
            }
            _ if len > 0 => {
                let i = rng.below(len);
                m[i] = rng.next() as u8;
            }
            _ => m.push(rng.next() as u8),
        }
    }
    m.truncate(64 * 1024);
    m
}

#[test]
fn every_fuzz_target_on_its_corpus_and_mutations() {
    let secs: f64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let only = std::env::var("FUZZ_TARGET").ok();
    for (i, (name, body)) in TARGETS.iter().enumerate() {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let seeds = corpus(name);
        for s in &seeds {
            body(s);
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut execs = seeds.len() as u64;
        while Instant::now() < end {
            for _ in 0..64 {
                body(&mutate(&mut rng, &seeds));
            }
            execs += 64;
        }
        eprintln!(
            "fuzz-fallback: {name}: {execs} execs in {secs} s ({} seeds)",
            seeds.len()
        );
    }
}
