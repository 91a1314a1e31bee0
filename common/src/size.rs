//! Sizes in bytes as written in workflow files and the agent's configuration: a number of
//! bytes, optionally followed by a decimal (`K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB`; `k`/`kB`
//! too) or binary (`Ki`/`KiB`, `Mi`/`MiB`, `Gi`/`GiB`, `Ti`/`TiB`) unit, with or without a
//! space: `512MB`, `64Mi`, `4 MiB`, `1000`.

/// The number of bytes `s` names, or `None` if it is not a size or overflows `u64`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "k" | "KB" | "kB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "T" | "TB" => 1_000_000_000_000,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        "Ti" | "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn units_decimal_and_binary() {
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("512MB"), Some(512_000_000));
        assert_eq!(parse_bytes("4 MiB"), Some(4 << 20));
        assert_eq!(parse_bytes(" 64Mi "), Some(64 << 20));
        assert_eq!(parse_bytes("2k"), Some(2000));
        assert_eq!(parse_bytes("1Ti"), Some(1 << 40));
        assert_eq!(parse_bytes("10B"), Some(10));
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        for bad in [
            "",
            "MB",
            "1.5G",
            "-1",
            "12 parsecs",
            "1e9",
            "0x10",
            "99999999999999999999",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
        assert_eq!(parse_bytes("18446744073709551615Ki"), None);
    }
}
