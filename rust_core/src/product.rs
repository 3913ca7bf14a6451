//! Products: one order book per GPU SKU x region x delivery hour, with its trading rules
//! (tick, lot) and its schedule (opening, gate closure).

use crate::reject::Reject;
use crate::types::{Price, ProductState, Qty, Timestamp, MICROS_PER_HOUR};

/// What an operator supplies to list a product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductSpec {
    /// `SKU/region/YYYY-MM-DDTHH`, the delivery hour in UTC.
    pub id: String,
    pub tick: Price,
    pub lot: Qty,
    /// Orders are accepted from this time on.
    pub open_at: Timestamp,
    /// Gate closure: trading stops and resting orders expire at this time.
    pub close_at: Timestamp,
}

/// A listed product.
#[derive(Clone, Debug)]
pub struct Product {
    pub spec: ProductSpec,
    pub sku: String,
    pub region: String,
    /// Delivery hour as whole hours since the Unix epoch.
    pub hour: i64,
    pub state: ProductState,
}

impl Product {
    pub fn new(spec: ProductSpec) -> Result<Product, Reject> {
        let (sku, region, hour) = parse_product_id(&spec.id)?;
        if spec.tick <= 0 {
            return Err(Reject::InvalidTickSize);
        }
        if spec.lot <= 0 {
            return Err(Reject::InvalidLotSize);
        }
        if spec.open_at >= spec.close_at || spec.close_at > hour * MICROS_PER_HOUR {
            return Err(Reject::InvalidSchedule);
        }
        Ok(Product {
            sku: sku.to_string(),
            region: region.to_string(),
            hour,
            state: ProductState::Open,
            spec,
        })
    }

    pub fn delivery_start(&self) -> Timestamp {
        self.hour * MICROS_PER_HOUR
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Splits `SKU/region/YYYY-MM-DDTHH` into its parts; the hour comes back as hours since the epoch.
pub fn parse_product_id(id: &str) -> Result<(&str, &str, i64), Reject> {
    let mut parts = id.split('/');
    let (Some(sku), Some(region), Some(when), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::InvalidProductId);
    };
    if !is_name(sku) || !is_name(region) {
        return Err(Reject::InvalidProductId);
    }
    let hour = parse_hour(when).ok_or(Reject::InvalidProductId)?;
    Ok((sku, region, hour))
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DDTHH` (UTC) to whole hours since the Unix epoch.
pub fn parse_hour(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 13 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let year = digits(&s[0..4])?;
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let hour = digits(&s[11..13])?;
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || hour > 23 {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_since_epoch(year, month, day) * 24 + hour)
}

/// Whole hours since the epoch back to `YYYY-MM-DDTHH`.
pub fn format_hour(hours: i64) -> String {
    let days = hours.div_euclid(24);
    let hour = hours.rem_euclid(24);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{hour:02}")
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days from 1970-01-01 by counting whole years and months: plain, and fast enough for
/// listing products (never on the matching path).
fn days_since_epoch(y: i64, m: i64, d: i64) -> i64 {
    let mut days = 0;
    for year in 1970..y {
        days += if is_leap(year) { 366 } else { 365 };
    }
    for month in 1..m {
        days += days_in_month(y, month);
    }
    days + d - 1
}

fn civil_from_days(mut days: i64) -> (i64, i64, i64) {
    let mut y = 1970;
    loop {
        let len = if is_leap(y) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        y += 1;
    }
    let mut m = 1;
    while days >= days_in_month(y, m) {
        days -= days_in_month(y, m);
        m += 1;
    }
    (y, m, days + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_hours() {
        assert_eq!(parse_hour("1970-01-01T00"), Some(0));
        assert_eq!(parse_hour("1970-01-02T03"), Some(27));
        // 2026-11-23T14:00Z = 1795442400 s
        assert_eq!(parse_hour("2026-11-23T14"), Some(1_795_442_400 / 3600));
        assert_eq!(
            parse_hour("2024-02-29T23").map(format_hour).as_deref(),
            Some("2024-02-29T23")
        );
        for h in [0, 1, 24 * 365, 24 * 366 * 30 + 5, 500_000] {
            assert_eq!(parse_hour(&format_hour(h)), Some(h));
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "H100",
            "H100/us-east",
            "H100/us-east/2026-11-23",
            "H100/us-east/2026-11-23T24",
            "H100/us-east/2025-02-29T01",
            "H100/us-east/2026-13-01T01",
            "H100/us east/2026-11-23T14",
            "H100/us-east/2026-11-23T14/x",
            "/us-east/2026-11-23T14",
            "H100/us-east/2026-11-23T+4",
        ] {
            assert_eq!(
                parse_product_id(bad),
                Err(Reject::InvalidProductId),
                "{bad}"
            );
        }
        assert_eq!(
            parse_product_id("H100-SXM/us-east/2026-11-23T14"),
            Ok(("H100-SXM", "us-east", 1_795_442_400 / 3600))
        );
    }
}
