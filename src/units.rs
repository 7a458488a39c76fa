//! Values as people write them on a command line: durations with units (`10s`, `2m`,
//! `500ms`; a bare number is seconds), sizes (`64KiB`, `24GiB`, `1MB`; a bare number is
//! bytes) and counts (`1M`, `10k`). Used as clap value parsers by every binary.

/// The longest duration taken: ten years. Longer ones are refused here, where the flag is
/// named, rather than panicking where a `Duration` or a deadline is made of them (`1e30`
/// once stopped the server at start-up with a panic in `Duration::from_secs_f64`). A flag
/// that can mean "forever" says so with 0.
pub const MAX_SECS: f64 = 10.0 * 365.0 * 86400.0;

/// A duration in seconds: `1.5`, `10s`, `500ms`, `250us`, `2m`, `1h`, `1d`; at most
/// [`MAX_SECS`].
pub fn secs(s: &str) -> Result<f64, String> {
    let (num, unit) = split(s);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (examples: 10s, 500ms, 2m, 1.5)"))?;
    let scale = match unit {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown duration unit `{unit}` (ms, s, m, h, d)"
            ))
        }
    };
    let out = v * scale;
    if !out.is_finite() || out < 0.0 {
        return Err(format!("`{s}` is not a non-negative duration"));
    }
    if out > MAX_SECS {
        return Err(format!(
            "`{s}` is longer than ten years (where a flag takes 0 for forever, use that)"
        ));
    }
    Ok(out)
}

/// A duration in whole seconds (rounded up), e.g. for expiry times.
pub fn whole_secs(s: &str) -> Result<u64, String> {
    Ok(secs(s)?.ceil() as u64)
}

/// A size in bytes: `4096`, `64KiB`, `1MiB`, `24GiB`, `1KB` (1000), `2MB`; `K`, `M`, `G`
/// alone are binary (as in `ulimit` and most memory flags).
pub fn bytes(s: &str) -> Result<u64, String> {
    let (num, unit) = split(s);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 4096, 64KiB, 1MiB, 24GiB)"))?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "`{s}`: unknown size unit `{unit}` (KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    whole(v * scale as f64, s)
}

/// A count: `5000`, `10k`, `1.5M`, `2G` (decimal).
pub fn count(s: &str) -> Result<u64, String> {
    let (num, unit) = split(s);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a count (examples: 5000, 10k, 1M)"))?;
    let scale: f64 = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" | "m" => 1e6,
        "G" | "g" => 1e9,
        _ => return Err(format!("`{s}`: unknown count suffix `{unit}` (k, M, G)")),
    };
    whole(v * scale, s)
}

fn whole(v: f64, s: &str) -> Result<u64, String> {
    if !v.is_finite() || v < 0.0 || v.fract() != 0.0 || v > u64::MAX as f64 {
        return Err(format!("`{s}` is not a whole non-negative number"));
    }
    Ok(v as u64)
}

/// `bytes` as a `usize`.
pub fn bytes_usize(s: &str) -> Result<usize, String> {
    bytes(s).and_then(|v| usize::try_from(v).map_err(|_| format!("`{s}` is too large")))
}

/// `bytes` as a `u32`.
pub fn bytes_u32(s: &str) -> Result<u32, String> {
    bytes(s).and_then(|v| u32::try_from(v).map_err(|_| format!("`{s}` is over 4 GiB")))
}

/// `count` as a `usize`.
pub fn count_usize(s: &str) -> Result<usize, String> {
    count(s).and_then(|v| usize::try_from(v).map_err(|_| format!("`{s}` is too large")))
}

/// `count` as a `u32`.
pub fn count_u32(s: &str) -> Result<u32, String> {
    count(s).and_then(|v| u32::try_from(v).map_err(|_| format!("`{s}` is too large")))
}

/// A `Field:  N kB` line of /proc/meminfo or /proc/PID/status text, in bytes.
pub fn kb_field(text: &str, field: &str) -> Option<u64> {
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn split(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(s.len());
    // An `e` that ends the number part with no digits after is not an exponent.
    (s[..at].trim(), s[at..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bare_numbers_are_seconds() {
        assert_eq!(secs("10"), Ok(10.0));
        assert_eq!(secs("10s"), Ok(10.0));
        assert_eq!(secs("1.5"), Ok(1.5));
        assert_eq!(secs("500ms"), Ok(0.5));
        assert_eq!(secs("2m"), Ok(120.0));
        assert_eq!(secs("1h"), Ok(3600.0));
        assert_eq!(secs(" 25s "), Ok(25.0));
        assert!(secs("10 parsecs")
            .unwrap_err()
            .contains("unknown duration unit"));
        assert!(secs("fast").is_err());
        // Long enough to mean forever, short enough for any deadline made of it.
        assert_eq!(secs("3650d"), Ok(MAX_SECS));
        for huge in ["1e30", "3651d", "1e10"] {
            assert!(secs(huge).unwrap_err().contains("ten years"), "{huge}");
            assert!(whole_secs(huge).is_err(), "{huge}");
        }
        assert!(secs("-1s").is_err());
        assert_eq!(whole_secs("1500ms"), Ok(2));
    }

    #[test]
    fn sizes_and_counts_take_suffixes() {
        assert_eq!(bytes("4096"), Ok(4096));
        assert_eq!(bytes("64KiB"), Ok(65536));
        assert_eq!(bytes("1MiB"), Ok(1 << 20));
        assert_eq!(bytes("24GiB"), Ok(24 << 30));
        assert_eq!(bytes("1M"), Ok(1 << 20));
        assert_eq!(bytes("1MB"), Ok(1_000_000));
        assert_eq!(bytes("1.5KiB"), Ok(1536));
        assert!(bytes("0.5").is_err(), "half a byte");
        assert!(bytes("3 parrots").is_err());
        assert_eq!(bytes_u32("4GiB").unwrap_err(), "`4GiB` is over 4 GiB");
        assert_eq!(count("1M"), Ok(1_000_000));
        assert_eq!(count("10k"), Ok(10_000));
        assert_eq!(count("2.5M"), Ok(2_500_000));
        assert_eq!(count("5000"), Ok(5000));
        assert!(count("1.5").is_err());
    }
}
