//! Turns criterion's saved estimates into the tables of `benches/README.md`:
//! every figure with its bound (measured in the same run: a memcpy, or for
//! the signal benchmarks a bare eventfd ping-pong or bare polled rings) and
//! the ratio, the round-trip percentiles of the cross-process benchmarks,
//! then the issue's targets, met or not.
//!
//! ```sh
//! cargo run -p vmbus_benches --bin bench_report -- [--criterion DIR] BASELINE [SECOND_BASELINE]
//! ```
//!
//! `BASELINE` is a name given to `cargo bench -- --save-baseline NAME` (or
//! `new`, criterion's latest run). With a second baseline, each figure of the
//! second run is shown too, with how far the two runs are apart.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vmbus_benches::bound_of;

/// One benchmark's result in one run.
#[derive(Debug, Clone, Copy)]
struct Figure {
    /// Median time per iteration, in nanoseconds.
    median_ns: f64,
    /// Packets (or copies) per iteration.
    elements: f64,
    /// Payload bytes per iteration.
    bytes: f64,
}

impl Figure {
    fn per_second(&self) -> f64 {
        self.elements / self.median_ns * 1e9
    }
    fn gigabytes_per_second(&self) -> f64 {
        self.bytes / self.median_ns
    }
    fn ns_per_element(&self) -> f64 {
        self.median_ns / self.elements
    }
}

type Run = BTreeMap<String, Figure>;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from("target/criterion");
    let mut baselines = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--criterion" => match args.next() {
                Some(path) => dir = path.into(),
                None => return usage("--criterion needs a directory"),
            },
            "-h" | "--help" => return usage(""),
            name => baselines.push(name.to_owned()),
        }
    }
    if baselines.is_empty() || baselines.len() > 2 {
        return usage("give one or two baseline names");
    }
    let runs: Vec<Run> = match baselines.iter().map(|name| load(&dir, name)).collect() {
        Ok(runs) => runs,
        Err(error) => {
            eprintln!("bench_report: {error}");
            return ExitCode::FAILURE;
        }
    };
    if runs[0].is_empty() {
        eprintln!("bench_report: no results for baseline {:?} under {}", baselines[0], dir.display());
        return ExitCode::FAILURE;
    }
    let percentiles: Vec<Option<Value>> = match baselines.iter().map(|name| load_percentiles(&dir, name)).collect() {
        Ok(percentiles) => percentiles,
        Err(error) => {
            eprintln!("bench_report: {error}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report(&baselines, &runs, &percentiles));
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    if !problem.is_empty() {
        eprintln!("bench_report: {problem}");
    }
    eprintln!("usage: bench_report [--criterion DIR] BASELINE [SECOND_BASELINE]");
    ExitCode::from(2)
}

/// Every benchmark saved under `dir` for `baseline`.
fn load(dir: &Path, baseline: &str) -> Result<Run, String> {
    let mut run = Run::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|name| name == baseline) {
                if let Some((id, figure)) = read_figure(&path)? {
                    run.insert(id, figure);
                }
            } else if path.file_name().is_some_and(|name| name != "report") {
                pending.push(path);
            }
        }
    }
    Ok(run)
}

/// The round-trip percentiles the `queue` benchmark saved for `baseline`
/// (`queue/processes_percentiles/<baseline>.json`), if it saved any.
fn load_percentiles(dir: &Path, baseline: &str) -> Result<Option<Value>, String> {
    let path = dir.join("queue").join("processes_percentiles").join(format!("{baseline}.json"));
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|error| format!("{}: {error}", path.display())),
        Err(_) => Ok(None),
    }
}

/// One row of the saved percentiles: p50 and p99 in ns, of the benchmark
/// and of the raw eventfd round trips measured alongside it.
struct PercentileRow {
    p50: f64,
    p99: f64,
    raw: Option<(f64, f64)>,
}

fn percentile_rows(saved: &Value) -> BTreeMap<String, PercentileRow> {
    let pair = |value: &Value| Some((value["p50_ns"].as_f64()?, value["p99_ns"].as_f64()?));
    saved["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| {
            let (p50, p99) = pair(&row["ours"])?;
            Some((row["id"].as_str()?.to_owned(), PercentileRow { p50, p99, raw: pair(&row["raw_alongside"]) }))
        })
        .collect()
}

/// The percentiles table: each benchmark's p50 and p99, the raw eventfd
/// ping-pong's measured alongside, and the ratio of the p50s, for each run.
fn percentiles_table(names: &[String], saved: &[Option<Value>]) -> String {
    let mut out = String::new();
    let runs: Vec<(&String, BTreeMap<String, PercentileRow>, &Value)> = names
        .iter()
        .zip(saved)
        .filter_map(|(name, saved)| saved.as_ref().map(|saved| (name, percentile_rows(saved), saved)))
        .collect();
    let Some((_, first, _)) = runs.first() else { return out };
    let _ = writeln!(out, "\n### queue/processes: round-trip percentiles\n");
    for (name, _, saved) in &runs {
        let _ = writeln!(
            out,
            "{name}: `lscpu` model name \"{}\", {} CPUs.",
            saved["model_name"].as_str().unwrap_or("?"),
            saved["cpus"].as_u64().unwrap_or(0)
        );
    }
    let mut header = String::from("\n| benchmark |");
    let mut rule = String::from("| --- |");
    for (name, _, _) in &runs {
        header.push_str(&format!(" {name} p50 | p99 | raw eventfd p50 | raw p99 | p50 / raw p50 |"));
        rule.push_str(" ---: | ---: | ---: | ---: | ---: |");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    let micros = |ns: f64| format!("{:.1} µs", ns / 1e3);
    for id in first.keys() {
        let mut line = format!("| {id} |");
        for (_, rows, _) in &runs {
            match rows.get(id) {
                Some(row) => {
                    let (raw50, raw99, ratio) = match row.raw {
                        Some((p50, p99)) => (micros(p50), micros(p99), format!("{:.2}", row.p50 / p50)),
                        None => ("-".into(), "-".into(), "-".into()),
                    };
                    let _ = write!(line, " {} | {} | {raw50} | {raw99} | {ratio} |", micros(row.p50), micros(row.p99));
                }
                None => line.push_str(" - | - | - | - | - |"),
            }
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

/// The target on the cross-process round trips: p50 at most 1.1 times the
/// raw eventfd ping-pong's, measured alongside.
fn percentile_targets(saved: &Value) -> String {
    let mut out = String::new();
    for (id, row) in percentile_rows(saved) {
        let Some((raw_p50, _)) = row.raw else { continue };
        let ratio = row.p50 / raw_p50;
        let met = if ratio <= 1.1 { "yes" } else { "**no**" };
        let _ = writeln!(
            out,
            "| cross-process round trip, p50 of the raw eventfd ping-pong's | `{id}` | <= 1.1 x | {ratio:.2} x | {met} |"
        );
    }
    out
}

fn read_figure(dir: &Path) -> Result<Option<(String, Figure)>, String> {
    let read = |name: &str| -> Result<Option<Value>, String> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|error| format!("{}: {error}", path.display())),
            Err(_) => Ok(None),
        }
    };
    let (Some(benchmark), Some(estimates)) = (read("benchmark.json")?, read("estimates.json")?) else {
        return Ok(None);
    };
    let id = benchmark["full_id"].as_str().ok_or("benchmark.json without full_id")?.to_owned();
    let median_ns = estimates["median"]["point_estimate"].as_f64().ok_or("estimates.json without a median")?;
    let throughput = &benchmark["throughput"];
    let (elements, bytes) = if let Some(both) = throughput.get("ElementsAndBytes") {
        (both["elements"].as_f64().unwrap_or(1.0), both["bytes"].as_f64().unwrap_or(0.0))
    } else if let Some(bytes) = throughput.get("Bytes").and_then(Value::as_f64) {
        (1.0, bytes)
    } else {
        (throughput.get("Elements").and_then(Value::as_f64).unwrap_or(1.0), 0.0)
    };
    Ok(Some((id, Figure { median_ns, elements, bytes })))
}

fn report(names: &[String], runs: &[Run], percentiles: &[Option<Value>]) -> String {
    let mut out = String::new();
    let first = &runs[0];
    let second = runs.get(1);
    let mut groups: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    let bounds: Vec<String> = first.keys().filter_map(|id| bound_of(id)).collect();
    for id in first.keys() {
        // Every figure but the bounds themselves (which appear beside theirs).
        if !id.split('/').any(|part| part.starts_with("memcpy")) && !bounds.contains(id) {
            groups.entry(id.split('/').next().unwrap_or("")).or_default().push(id);
        }
    }
    for ids in groups.values_mut() {
        ids.sort_by_key(|id| natural_key(id));
    }
    let mut all_spreads = Vec::new();
    for group in ["ring_memory", "one_thread", "two_threads", "queue"] {
        let Some(ids) = groups.get(group) else { continue };
        let mut spreads = Vec::new();
        let _ = writeln!(out, "\n### {group}\n");
        let mut header =
            String::from("| benchmark | median | per second | payload GB/s | bound | bound GB/s | ratio |");
        let mut rule = String::from("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        if second.is_some() {
            header.push_str(&format!(" {} median | {} ratio | runs apart |", names[1], names[1]));
            rule.push_str(" ---: | ---: | ---: |");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for id in ids {
            let figure = first[*id];
            let bound_id = bound_of(id).unwrap_or_default();
            let bound = first.get(&bound_id);
            let mut row = format!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                id,
                time(figure.ns_per_element() * figure.elements),
                rate(figure.per_second()),
                gigabytes(figure.bytes, figure.gigabytes_per_second()),
                bound.map_or("-".into(), |bound| time(bound.median_ns)),
                bound.map_or("-".into(), |bound| gigabytes(bound.bytes, bound.gigabytes_per_second())),
                bound.map_or("-".into(), |bound| ratio(bound, &figure)),
            );
            if let Some(second) = second {
                match second.get(*id) {
                    Some(again) => {
                        let apart = (again.median_ns - figure.median_ns).abs() / figure.median_ns;
                        spreads.push(apart);
                        let bound = second.get(&bound_id);
                        let _ = write!(
                            row,
                            " {} | {} | {:.0}% |",
                            time(again.median_ns),
                            bound.map_or("-".into(), |bound| ratio(bound, again)),
                            apart * 100.0
                        );
                    }
                    None => row.push_str(" - | - | - |"),
                }
            }
            let _ = writeln!(out, "{row}");
        }
        if let Some(summary) = spread_summary(&mut spreads) {
            let _ = writeln!(out, "\n{group}: {summary}");
        }
        all_spreads.extend(spreads);
    }
    if let Some(summary) = spread_summary(&mut all_spreads) {
        let _ = writeln!(out, "\nAll figures: {summary}");
    }
    out.push_str(&commit_table(first));
    out.push_str(&percentiles_table(names, percentiles));
    for ((name, run), saved) in names.iter().zip(runs).zip(percentiles) {
        let _ = writeln!(out, "\n### Targets ({name})\n");
        out.push_str(&targets(run));
        if let Some(saved) = saved {
            out.push_str(&percentile_targets(saved));
        }
    }
    out
}

/// What one commit costs on each side: a one-packet batch committed less
/// the same batch reverted (`commit` group of the `one_thread` benchmark).
fn commit_table(run: &Run) -> String {
    let mut out = String::from(
        "\n### commit\n\n| side | batch committed | batch reverted | one commit |\n| --- | ---: | ---: | ---: |\n",
    );
    let mut rows = 0;
    for side in ["writer", "reader"] {
        let figure = |name: &str| run.get(&format!("commit/{side}/{name}")).map(Figure::ns_per_element);
        if let (Some(committed), Some(reverted)) = (figure("commit"), figure("revert")) {
            let _ =
                writeln!(out, "| {side} | {} | {} | {} |", time(committed), time(reverted), time(committed - reverted));
            rows += 1;
        }
    }
    if rows == 0 {
        return String::new();
    }
    out
}

/// How far apart two runs' medians are, summarised: `None` without pairs.
fn spread_summary(spreads: &mut [f64]) -> Option<String> {
    if spreads.is_empty() {
        return None;
    }
    spreads.sort_by(f64::total_cmp);
    let median = spreads[spreads.len() / 2];
    let p90 = spreads[(spreads.len() * 9 / 10).min(spreads.len() - 1)];
    Some(format!(
        "the two runs' medians differ by {:.0}% in the median over {} figures, by {:.0}% or less for 90% of them, and by {:.0}% at most.",
        median * 100.0,
        spreads.len(),
        p90 * 100.0,
        spreads[spreads.len() - 1] * 100.0
    ))
}

/// The issue's targets, each with the figure that decides it.
fn targets(run: &Run) -> String {
    let mut out = String::from("| target | figure | wanted | measured | met |\n| --- | --- | ---: | ---: | --- |\n");
    let mut row = |target: &str, id: String, wanted: f64, measured: Option<f64>, unit: &str| {
        let shown = measured.map_or("-".into(), |value| format!("{value:.2} {unit}"));
        let met = measured.map_or("?", |value| if value >= wanted { "yes" } else { "**no**" });
        let _ = writeln!(out, "| {target} | `{id}` | {wanted} {unit} | {shown} | {met} |");
    };
    let mega_packets = |id: &str| run.get(id).map(|figure| figure.per_second() / 1e6);
    for kind in ["in_band", "completion", "transfer_pages", "gpa_direct"] {
        for payload in [0, 64, 256] {
            for (commit, wanted) in [("per_packet", 40.0), ("batch32", 60.0)] {
                let id = format!("one_thread/{kind}/{commit}/{payload}");
                row("small packets, one thread", id.clone(), wanted, mega_packets(&id), "M packets/s");
            }
        }
    }
    for kind in ["in_band", "completion", "transfer_pages", "gpa_direct"] {
        for payload in [4096, 16384, 65536] {
            for commit in ["per_packet", "batch32"] {
                let id = format!("one_thread/{kind}/{commit}/{payload}");
                let bound = run.get(&format!("one_thread/memcpy_x2/{commit}/{payload}"));
                let measured =
                    run.get(&id).zip(bound).map(|(figure, bound)| 100.0 * bound.median_ns / figure.median_ns);
                row("large packets, one thread, of the two-copy bound", id, 90.0, measured, "%");
            }
        }
    }
    for kind in ["in_band", "completion", "transfer_pages", "gpa_direct"] {
        for (payload, wanted) in [(64, 45.0), (1500, 75.0), (4096, 95.0), (16384, 95.0), (65536, 95.0)] {
            let id = format!("one_thread/{kind}/batch32/{payload}");
            let bound = run.get(&format!("one_thread/memcpy_x2/batch32/{payload}"));
            let measured = run.get(&id).zip(bound).map(|(figure, bound)| 100.0 * bound.median_ns / figure.median_ns);
            row("batched, of the two-copy bound (issue 10)", id, wanted, measured, "%");
        }
    }
    for ring in ["ring4m", "ring256k"] {
        for (commit, wanted) in [("per_packet", 8.0), ("batch32", 40.0)] {
            let id = format!("two_threads/{ring}/{commit}/64");
            row("two threads, 64 B", id.clone(), wanted, mega_packets(&id), "M packets/s");
        }
        for commit in ["per_packet", "batch32"] {
            let id = format!("two_threads/{ring}/{commit}/16384");
            let measured = run.get(&id).map(Figure::gigabytes_per_second);
            row("two threads, 16 KiB", id, 20.0, measured, "GB/s");
        }
    }
    out
}

/// A sort key that orders the numbers in an id by value: `64` before `256`.
fn natural_key(id: &str) -> Vec<(u64, String)> {
    id.split('/')
        .map(|part| part.parse().map_or((u64::MAX, part.to_owned()), |number| (number, String::new())))
        .collect()
}

fn ratio(bound: &Figure, figure: &Figure) -> String {
    format!("{:.2}", bound.ns_per_element() / figure.ns_per_element())
}

fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else {
        format!("{:.1} k", per_second / 1e3)
    }
}

fn gigabytes(bytes: f64, per_second: f64) -> String {
    if bytes == 0.0 {
        "-".into()
    } else {
        format!("{per_second:.2}")
    }
}
