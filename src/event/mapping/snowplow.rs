//! Snowplow's enriched event TSV: 131 tab-separated columns in a fixed order, read by column name.

use std::borrow::Cow;

use super::walk::{Extraction, PathTree, ROOT, Scalar};

/// The columns of an enriched event, in order (Snowplow's "enriched TSV format" page).
pub const COLUMNS: [&str; 131] = [
    "app_id",
    "platform",
    "etl_tstamp",
    "collector_tstamp",
    "dvce_created_tstamp",
    "event",
    "event_id",
    "txn_id",
    "name_tracker",
    "v_tracker",
    "v_collector",
    "v_etl",
    "user_id",
    "user_ipaddress",
    "user_fingerprint",
    "domain_userid",
    "domain_sessionidx",
    "network_userid",
    "geo_country",
    "geo_region",
    "geo_city",
    "geo_zipcode",
    "geo_latitude",
    "geo_longitude",
    "geo_region_name",
    "ip_isp",
    "ip_organization",
    "ip_domain",
    "ip_netspeed",
    "page_url",
    "page_title",
    "page_referrer",
    "page_urlscheme",
    "page_urlhost",
    "page_urlport",
    "page_urlpath",
    "page_urlquery",
    "page_urlfragment",
    "refr_urlscheme",
    "refr_urlhost",
    "refr_urlport",
    "refr_urlpath",
    "refr_urlquery",
    "refr_urlfragment",
    "refr_medium",
    "refr_source",
    "refr_term",
    "mkt_medium",
    "mkt_source",
    "mkt_term",
    "mkt_content",
    "mkt_campaign",
    "contexts",
    "se_category",
    "se_action",
    "se_label",
    "se_property",
    "se_value",
    "unstruct_event",
    "tr_orderid",
    "tr_affiliation",
    "tr_total",
    "tr_tax",
    "tr_shipping",
    "tr_city",
    "tr_state",
    "tr_country",
    "ti_orderid",
    "ti_sku",
    "ti_name",
    "ti_category",
    "ti_price",
    "ti_quantity",
    "pp_xoffset_min",
    "pp_xoffset_max",
    "pp_yoffset_min",
    "pp_yoffset_max",
    "useragent",
    "br_name",
    "br_family",
    "br_version",
    "br_type",
    "br_renderengine",
    "br_lang",
    "br_features_pdf",
    "br_features_flash",
    "br_features_java",
    "br_features_director",
    "br_features_quicktime",
    "br_features_realplayer",
    "br_features_windowsmedia",
    "br_features_gears",
    "br_features_silverlight",
    "br_cookies",
    "br_colordepth",
    "br_viewwidth",
    "br_viewheight",
    "os_name",
    "os_family",
    "os_manufacturer",
    "os_timezone",
    "dvce_type",
    "dvce_ismobile",
    "dvce_screenwidth",
    "dvce_screenheight",
    "doc_charset",
    "doc_width",
    "doc_height",
    "tr_currency",
    "tr_total_base",
    "tr_tax_base",
    "tr_shipping_base",
    "ti_currency",
    "ti_price_base",
    "base_currency",
    "geo_timezone",
    "mkt_clickid",
    "mkt_network",
    "etl_tags",
    "dvce_sent_tstamp",
    "refr_domain_userid",
    "refr_device_tstamp",
    "derived_contexts",
    "domain_sessionid",
    "derived_tstamp",
    "event_vendor",
    "event_name",
    "event_format",
    "event_version",
    "event_fingerprint",
    "true_tstamp",
];

/// Whether a column holds a number, read as a number rather than text.
fn is_number(name: &str) -> bool {
    name.starts_with("pp_")
        || name.ends_with("_base")
        || name.ends_with("_urlport")
        || name.starts_with("geo_l")
        || name.ends_with("width")
        || name.ends_with("height")
        || matches!(name, "txn_id" | "domain_sessionidx" | "se_value" | "tr_total" | "tr_tax" | "tr_shipping")
        || matches!(name, "ti_price" | "ti_quantity")
}

/// Whether a column holds a flag, written `1` or `0`.
fn is_flag(name: &str) -> bool {
    name.starts_with("br_features_") || name == "br_cookies" || name == "dvce_ismobile"
}

/// What one read TSV column fills: a slot, with the column's value read as its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Text, into this slot.
    Text(usize),
    /// A number, into this slot.
    Number(usize),
    /// A flag written `1` or `0`, into this slot.
    Flag(usize),
}

/// The columns a mapping whose pointers are `tree`'s reads, by index in line order, with what each fills.
pub fn columns(tree: &PathTree) -> Vec<(usize, Column)> {
    COLUMNS
        .iter()
        .enumerate()
        .filter_map(|(index, name)| {
            let slot = tree.child(ROOT, name).and_then(|node| tree.slot_of(node))?;
            let column = match () {
                () if is_number(name) => Column::Number(slot),
                () if is_flag(name) => Column::Flag(slot),
                () => Column::Text(slot),
            };
            Some((index, column))
        })
        .collect()
}

/// Fills the slots of the read columns from one TSV line; an empty column is absent. The columns between
/// two read ones are counted a word of eight bytes at a time, not visited.
pub fn walk_tsv<'a>(line: &'a str, columns: &[(usize, Column)], out: &mut Extraction<'a>) -> Result<(), String> {
    let line = line.trim_end_matches(['\n', '\r']);
    let wrong_count = || {
        let count = line.bytes().filter(|&byte| byte == b'\t').count() + 1;
        format!("Snowplow enriched TSV has {count} columns; expected {}", COLUMNS.len())
    };
    let mut tabs = Tabs::new(line.as_bytes());
    // Tabs taken so far, and so the index of the column that starts at `start`.
    let (mut taken, mut start) = (0, 0);
    for &(index, column) in columns {
        if index > taken {
            start = tabs.nth(index - taken - 1).ok_or_else(wrong_count)? + 1;
            taken = index;
        }
        let end = match tabs.next() {
            Some(tab) => {
                taken += 1;
                tab
            }
            None => line.len(),
        };
        let value = line.get(start..end).unwrap_or_default();
        start = end + 1;
        if value.is_empty() {
            continue;
        }
        let name = || COLUMNS.get(index).copied().unwrap_or_default();
        match column {
            Column::Text(slot) => out.slots[slot] = Some(Scalar::Text(Cow::Borrowed(value))),
            Column::Number(slot) => match value.parse::<f64>() {
                Ok(number) if number.is_finite() => out.slots[slot] = Some(Scalar::Float(number)),
                _ => return Err(format!("column {} is not a number: {value:?}", name())),
            },
            Column::Flag(slot) => match value {
                "1" | "true" => out.slots[slot] = Some(Scalar::Flag(true)),
                "0" | "false" => out.slots[slot] = Some(Scalar::Flag(false)),
                _ => return Err(format!("column {} is not 0 or 1: {value:?}", name())),
            },
        }
    }
    if taken + tabs.count() + 1 != COLUMNS.len() {
        return Err(wrong_count());
    }
    Ok(())
}

/// The positions of the tabs in a line, found eight bytes at a time.
struct Tabs<'a> {
    bytes: &'a [u8],
    /// Where the current word starts.
    base: usize,
    /// The high bit of each byte of the current word that is a tab and not yet returned.
    found: u64,
    /// Where the next word starts.
    next: usize,
}

impl<'a> Tabs<'a> {
    fn new(bytes: &'a [u8]) -> Tabs<'a> {
        Tabs { bytes, base: 0, found: 0, next: 0 }
    }

    /// Takes the next word of eight bytes, if there is one.
    #[inline]
    fn load(&mut self) {
        // `!(((word & LOW7) + LOW7) | word | LOW7)` marks exactly the zero bytes of `word` (the tabs, after
        // the xor), with no carry from one byte into the next.
        const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
        if let Some(chunk) = self.bytes.get(self.next..).and_then(<[u8]>::first_chunk::<8>) {
            let word = u64::from_le_bytes(*chunk) ^ 0x0909_0909_0909_0909;
            self.found = !(((word & LOW7) + LOW7) | word | LOW7);
            (self.base, self.next) = (self.next, self.next + 8);
        }
    }
}

impl Iterator for Tabs<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.found != 0 {
                let position = self.base + (self.found.trailing_zeros() / 8) as usize;
                self.found &= self.found - 1;
                return Some(position);
            }
            match self.bytes.get(self.next..).and_then(<[u8]>::first_chunk::<8>) {
                Some(_) => self.load(),
                None => {
                    // Fewer than eight bytes are left: one by one.
                    let rest = self.bytes.get(self.next..)?;
                    let position = self.next + rest.iter().position(|&byte| byte == b'\t')?;
                    self.next = position + 1;
                    return Some(position);
                }
            }
        }
    }

    /// Whole words of tabs before the one wanted are counted, not visited.
    fn nth(&mut self, mut skip: usize) -> Option<usize> {
        loop {
            let here = self.found.count_ones() as usize;
            if skip < here {
                for _ in 0..skip {
                    self.found &= self.found - 1;
                }
                return self.next();
            }
            skip -= here;
            self.found = 0;
            if self.bytes.len() - self.next < 8 {
                for _ in 0..skip {
                    self.next()?;
                }
                return self.next();
            }
            self.load();
        }
    }

    fn count(mut self) -> usize {
        let mut count = 0;
        while self.bytes.len() - self.next >= 8 {
            count += self.found.count_ones() as usize;
            self.load();
        }
        count + self.found.count_ones() as usize + self.bytes[self.next..].iter().filter(|&&byte| byte == b'\t').count()
    }
}

#[cfg(test)]
mod tests {
    use super::Tabs;

    proptest::proptest! {
        /// The word-at-a-time search finds the tabs a byte-by-byte one finds, whatever surrounds them.
        #[test]
        fn tabs_are_found_as_one_byte_at_a_time_finds_them(line in "[a\t\u{8}\u{89}é ]{0,40}") {
            let expected: Vec<usize> =
                line.bytes().enumerate().filter(|&(_, byte)| byte == b'\t').map(|(at, _)| at).collect();
            proptest::prop_assert_eq!(&Tabs::new(line.as_bytes()).collect::<Vec<_>>(), &expected);
            proptest::prop_assert_eq!(Tabs::new(line.as_bytes()).count(), expected.len());
            for skip in 0..=expected.len() {
                let mut tabs = Tabs::new(line.as_bytes());
                proptest::prop_assert_eq!(tabs.nth(skip), expected.get(skip).copied());
                proptest::prop_assert_eq!(tabs.count(), expected.len().saturating_sub(skip + 1));
            }
        }
    }
}
