// SPDX-License-Identifier: GPL-2.0

//! Sizes in words and in kernel command-line notation.

/// `bytes` for people: `512 B`, `3.5 KiB`, `64.0 MiB`, `1.50 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `bytes` in the kernel's `memparse` notation, exact: the largest of
/// `G`, `M`, `K` that divides it, else plain bytes (`64M`, `1536K`).
pub fn kernel_size(bytes: u64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Parses a size with an optional K/M/G/T suffix, as the kernel does.
pub fn parse_size(text: &str) -> Option<u64> {
    rapilog_format::region_spec::parse_memsize(text.trim().as_bytes())
}

/// Parses a decimal or `0x` hexadecimal number.
pub fn parse_number(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3584), "3.5 KiB");
        assert_eq!(human(64 << 20), "64.0 MiB");
        assert_eq!(kernel_size(64 << 20), "64M");
        assert_eq!(kernel_size(1 << 30), "1G");
        assert_eq!(kernel_size(1536 << 10), "1536K");
        assert_eq!(kernel_size(1000), "1000");
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_number("0x60000000"), Some(0x6000_0000));
        assert_eq!(parse_number("4096"), Some(4096));
        assert_eq!(parse_number("zz"), None);
    }
}
