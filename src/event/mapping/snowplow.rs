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

/// What one TSV column fills: nothing, or a slot with the column's value read as its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// No pointer of the mapping reads this column.
    Unread,
    /// Text, into this slot.
    Text(usize),
    /// A number, into this slot.
    Number(usize),
    /// A flag written `1` or `0`, into this slot.
    Flag(usize),
}

/// What each column fills, for a mapping whose pointers are `tree`'s.
pub fn columns(tree: &PathTree) -> Vec<Column> {
    COLUMNS
        .iter()
        .map(|name| match tree.child(ROOT, name).and_then(|node| tree.slot_of(node)) {
            None => Column::Unread,
            Some(slot) if is_number(name) => Column::Number(slot),
            Some(slot) if is_flag(name) => Column::Flag(slot),
            Some(slot) => Column::Text(slot),
        })
        .collect()
}

/// Fills the slots of the read columns from one TSV line; an empty column is absent.
pub fn walk_tsv<'a>(line: &'a str, columns: &[Column], out: &mut Extraction<'a>) -> Result<(), String> {
    let line = line.trim_end_matches(['\n', '\r']);
    let mut start = 0;
    let mut count = 0;
    // Most columns are empty or short: a plain scan beats a vectorised search restarted at every tab.
    let ends = line.bytes().enumerate().filter_map(|(at, byte)| (byte == b'\t').then_some(at));
    for end in ends.chain([line.len()]) {
        let value = &line[start..end];
        let column = columns.get(count).copied().unwrap_or(Column::Unread);
        (start, count) = (end + 1, count + 1);
        if value.is_empty() {
            continue;
        }
        let name = || COLUMNS.get(count - 1).copied().unwrap_or_default();
        match column {
            Column::Unread => {}
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
    if count != COLUMNS.len() {
        return Err(format!("Snowplow enriched TSV has {count} columns; expected {}", COLUMNS.len()));
    }
    Ok(())
}
