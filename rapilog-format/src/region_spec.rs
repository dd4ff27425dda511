// SPDX-License-Identifier: GPL-2.0

//! The `SIZE@PHYS` notation that names the reserved region.
//!
//! The same text appears in three places that must agree: the boot loader's
//! `memmap=SIZE$PHYS` reservation, the module's `region=SIZE@PHYS` parameter
//! and the crash kernel's `rapilog.region=SIZE@PHYS` argument read by
//! rapilog-rescue. Sizes and addresses take the kernel's `memparse()` suffixes
//! (K, M, G, T; powers of 1024) and addresses may be hexadecimal (`0x...`).

use core::fmt;

/// Page size the region must be aligned to (x86-64 base pages).
pub const REGION_ALIGN: u64 = 4096;

/// A physical address range, as given by `SIZE@PHYS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionSpec {
    /// Length of the region in bytes.
    pub size: u64,
    /// Physical address of the first byte.
    pub phys: u64,
}

/// Why a `SIZE@PHYS` text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionSpecError {
    /// Nothing was given.
    Empty,
    /// There is no `@` between size and address.
    MissingAt,
    /// The size is not a number with an optional K/M/G/T suffix.
    BadSize,
    /// The address is not a number with an optional K/M/G/T suffix.
    BadAddress,
    /// The size is zero.
    ZeroSize,
    /// Size or address is not a multiple of [`REGION_ALIGN`].
    Misaligned,
    /// `PHYS + SIZE` does not fit in 64 bits.
    Overflow,
}

impl fmt::Display for RegionSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self {
            Self::Empty => "no region given",
            Self::MissingAt => "expected SIZE@PHYS, e.g. 64M@0x60000000",
            Self::BadSize => "SIZE must be a number with an optional K/M/G/T suffix, e.g. 64M",
            Self::BadAddress => "PHYS must be an address such as 0x60000000 or 1536M",
            Self::ZeroSize => "SIZE must not be zero",
            Self::Misaligned => "SIZE and PHYS must be multiples of 4 KiB (the page size)",
            Self::Overflow => "PHYS + SIZE is beyond the 64-bit physical address space",
        };
        f.write_str(why)
    }
}

impl RegionSpec {
    /// Parses `SIZE@PHYS` (surrounding whitespace ignored).
    pub fn parse(text: &[u8]) -> Result<Self, RegionSpecError> {
        let text = trim(text);
        if text.is_empty() {
            return Err(RegionSpecError::Empty);
        }
        let at = text
            .iter()
            .position(|&b| b == b'@')
            .ok_or(RegionSpecError::MissingAt)?;
        let size = parse_memsize(&text[..at]).ok_or(RegionSpecError::BadSize)?;
        let phys = parse_memsize(&text[at + 1..]).ok_or(RegionSpecError::BadAddress)?;
        if size == 0 {
            return Err(RegionSpecError::ZeroSize);
        }
        if size % REGION_ALIGN != 0 || phys % REGION_ALIGN != 0 {
            return Err(RegionSpecError::Misaligned);
        }
        phys.checked_add(size).ok_or(RegionSpecError::Overflow)?;
        Ok(Self { size, phys })
    }

    /// One past the last byte of the region.
    pub fn end(&self) -> u64 {
        // `parse` checked that this does not overflow; saturate for hand-built values.
        self.phys.saturating_add(self.size)
    }
}

impl fmt::Display for RegionSpec {
    /// Prints the canonical form, e.g. `64M@0x60000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "T"),
            (1 << 30, "G"),
            (1 << 20, "M"),
            (1 << 10, "K"),
        ];
        let (div, unit) = UNITS
            .iter()
            .copied()
            .find(|&(d, _)| self.size % d == 0)
            .unwrap_or((1, ""));
        write!(f, "{}{}@{:#x}", self.size / div, unit, self.phys)
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !first.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

/// Parses a number like the kernel's `memparse()`: decimal or `0x` hex, then
/// an optional K/M/G/T suffix. Returns `None` on anything else or on overflow.
pub fn parse_memsize(s: &[u8]) -> Option<u64> {
    let (digits, radix) = match s {
        [b'0', b'x' | b'X', rest @ ..] => (rest, 16),
        _ => (s, 10),
    };
    let split = digits
        .iter()
        .position(|b| !(*b as char).is_digit(radix))
        .unwrap_or(digits.len());
    let (number, suffix) = digits.split_at(split);
    if number.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &b in number {
        let digit = u64::from((b as char).to_digit(radix)?);
        value = value.checked_mul(u64::from(radix))?.checked_add(digit)?;
    }
    let shift = match suffix {
        [] => 0,
        [b'k' | b'K'] => 10,
        [b'm' | b'M'] => 20,
        [b'g' | b'G'] => 30,
        [b't' | b'T'] => 40,
        _ => return None,
    };
    value.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let r = RegionSpec::parse(b"64M@0x60000000").unwrap();
        assert_eq!(
            r,
            RegionSpec {
                size: 64 << 20,
                phys: 0x6000_0000
            }
        );
        assert_eq!(
            RegionSpec::parse(b" 4096@1536M\n").unwrap().phys,
            1536 << 20
        );
        assert_eq!(
            RegionSpec::parse(b"1G@0x100000000").unwrap().end(),
            0x1_4000_0000
        );
    }

    #[test]
    fn refuses_malformed_text_with_the_reason() {
        use RegionSpecError::*;
        for (text, err) in [
            (&b""[..], Empty),
            (b"   ", Empty),
            (b"64M", MissingAt),
            (b"64Q@0x1000", BadSize),
            (b"@0x1000", BadSize),
            (b"64M@", BadAddress),
            (b"64M@0x", BadAddress),
            (b"64M@zz", BadAddress),
            (b"0@0x1000", ZeroSize),
            (b"100@0x1000", Misaligned),
            (b"64M@0x1001", Misaligned),
            (b"16T@0xfffffffffffff000", Overflow),
            (b"99999999999999999999@0", BadSize),
            (b"17179869184G@0", BadSize),
        ] {
            assert_eq!(
                RegionSpec::parse(text),
                Err(err),
                "{:?}",
                core::str::from_utf8(text)
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["64M@0x60000000", "4K@0x1000", "3G@0x100000000", "12K@0x0"] {
            let r = RegionSpec::parse(text.as_bytes()).unwrap();
            let mut buf = [0u8; 64];
            let mut w = Cursor {
                buf: &mut buf,
                len: 0,
            };
            fmt::write(&mut w, format_args!("{r}")).unwrap();
            let len = w.len;
            assert_eq!(&buf[..len], text.as_bytes());
        }
    }

    struct Cursor<'a> {
        buf: &'a mut [u8],
        len: usize,
    }

    impl fmt::Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            self.buf
                .get_mut(self.len..end)
                .ok_or(fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
}
