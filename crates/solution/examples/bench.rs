//! Throughput of the reader beside a raw inflate of the same files.
//!
//! `cargo run --release -p slipway-solution --example bench -- DIR [ROUNDS]`
//! reads every `*.zip` in DIR three ways, in the same run: `inspect` (what
//! `slipway solution inspect` does: [`ReadMode::Facts`]), `full` (every entry
//! inflated and hashed: [`ReadMode::Full`], what diffs use) and `raw` (every
//! entry inflated with the same zip crate, nothing parsed). It prints MB/s
//! (MB of zip files per second) and the ratios to raw.

use std::io::{Cursor, Read};
use std::time::{Duration, Instant};

use slipway_solution::{Limits, ReadMode, Solution};

fn raw_inflate(bytes: &[u8]) -> u64 {
    let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return 0;
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    for i in 0..zip.len() {
        let Ok(mut f) = zip.by_index(i) else { continue };
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    total
}

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Inspect,
    Full,
    Raw,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: bench DIR [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: u32 = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let mut files: Vec<(String, Vec<u8>)> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("zip")))
            .filter_map(|p| std::fs::read(&p).ok().map(|b| (p.display().to_string(), b)))
            .collect(),
        Err(e) => {
            eprintln!("cannot list {dir}: {e}");
            std::process::exit(2);
        }
    };
    files.sort();
    let zip_bytes: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let limits = Limits::default();
    let ways = [Way::Inspect, Way::Full, Way::Raw];
    let mut time = [Duration::ZERO; 3];
    let (mut ok, mut inflated) = (0usize, 0u64);
    for round in 0..rounds {
        // rotate the order so no way always runs first on a cold cache
        for k in 0..3 {
            let w = (k + round as usize) % 3;
            let start = Instant::now();
            for (_, bytes) in &files {
                match ways[w] {
                    Way::Raw => inflated += raw_inflate(bytes),
                    way => {
                        let mode = if way == Way::Full {
                            ReadMode::Full
                        } else {
                            ReadMode::Facts
                        };
                        let r = Solution::from_reader_mode(Cursor::new(bytes), &limits, mode);
                        ok += usize::from(r.is_ok() && way == Way::Full);
                    }
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
    for (w, name) in ["inspect (facts)", "full read (digests)", "raw inflate"]
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
    println!("target: inspect within 1.5x of raw");
}
