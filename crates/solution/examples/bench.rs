//! Throughput of the reader beside a raw inflate of the same files.
//!
//! `cargo run --release -p slipway-solution --example bench -- DIR [ROUNDS]`
//! reads every `*.zip` in DIR three ways, in the same run, each from the file
//! on disk: `inspect` (exactly the read `slipway solution inspect` does:
//! [`Solution::open_facts`], [`ReadMode::Facts`]), `full` (every entry
//! inflated and hashed: [`Solution::open`], [`ReadMode::Full`], what diffs
//! use) and `raw` (the file opened the same way and every entry inflated with
//! the same zip crate, nothing parsed). It prints MB/s (MB of zip files per
//! second) and the ratios to raw.
//!
//! [`ReadMode::Facts`]: slipway_solution::ReadMode::Facts
//! [`ReadMode::Full`]: slipway_solution::ReadMode::Full

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use slipway_solution::{Limits, Solution};

/// Inflates every entry, hashing it with sha256 when `hash`; returns the bytes inflated.
fn raw_inflate(path: &Path, hash: bool) -> u64 {
    let Ok(file) = File::open(path) else { return 0 };
    let Ok(mut zip) = zip::ZipArchive::new(BufReader::new(file)) else {
        return 0;
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    for i in 0..zip.len() {
        let Ok(mut f) = zip.by_index(i) else { continue };
        let mut hasher = hash.then(Sha256::new);
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..n]);
            }
        }
        if let Some(h) = hasher.take() {
            std::hint::black_box(h.finalize());
        }
    }
    total
}

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Inspect,
    Full,
    Raw,
    RawHash,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: bench DIR [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: u32 = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let mut files: Vec<(std::path::PathBuf, u64)> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("zip")))
            .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())))
            .collect(),
        Err(e) => {
            eprintln!("cannot list {dir}: {e}");
            std::process::exit(2);
        }
    };
    files.sort();
    let zip_bytes: u64 = files.iter().map(|(_, len)| len).sum();
    let limits = Limits::default();
    let ways = [Way::Inspect, Way::Full, Way::Raw, Way::RawHash];
    let mut time = [Duration::ZERO; 4];
    let (mut ok, mut inflated) = (0usize, 0u64);
    for round in 0..rounds {
        // rotate the order so no way always runs first on a cold cache
        for k in 0..ways.len() {
            let w = (k + round as usize) % ways.len();
            let start = Instant::now();
            for (path, _) in &files {
                match ways[w] {
                    Way::Raw => inflated += raw_inflate(path, false),
                    Way::RawHash => {
                        raw_inflate(path, true);
                    }
                    Way::Inspect => {
                        let _ = Solution::open_facts(path, &limits);
                    }
                    Way::Full => ok += usize::from(Solution::open(path, &limits).is_ok()),
                }
            }
            time[w] += start.elapsed();
        }
    }
    let mb = (zip_bytes as f64) * f64::from(rounds) / 1e6;
    println!(
        "files: {} ({:.1} MB of zips, {:.1} MB inflated per round), rounds: {rounds}",
        files.len(),
        zip_bytes as f64 / 1e6,
        inflated as f64 / f64::from(rounds) / 1e6
    );
    println!(
        "accepted as solutions: {} of {}",
        ok / rounds as usize,
        files.len()
    );
    let raw = time[2].as_secs_f64();
    for (w, name) in [
        "inspect (facts)",
        "full read (digests)",
        "raw inflate",
        "raw inflate + sha256",
    ]
    .iter()
    .enumerate()
    {
        let t = time[w].as_secs_f64();
        println!(
            "{name:<20} {:8.1} MB/s  {t:.3} s  {:.2}x raw time",
            mb / t,
            t / raw
        );
    }
    println!("target: inspect within 1.5x of raw (raw + sha256 is the floor of the full read)");
}
