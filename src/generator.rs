//! A deterministic generator of realistic interaction events for the example scorecard: the source of
//! `leadscore demo`, `leadscore generate` and the benchmarks.
//!
//! Contacts are drawn with a Zipf-like skew (a few very active contacts, a long tail), and event types
//! follow a typical B2B funnel: many page visits and email opens, fewer downloads and webinars, rare demo
//! requests, unsubscribes and bounces. [`EventGenerator::with_identities`] adds what the example
//! scorecard's identity and account rules are for: companies, anonymous visitors who identify, and
//! duplicate records merged into their contact.

use crate::event::{AttrValue, Event, ManualAdjustment};

/// A small, fast, seedable PRNG (SplitMix64): the same seed gives the same stream on every machine.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// Endless stream of events over a fixed population of contacts.
#[derive(Debug, Clone)]
pub struct EventGenerator {
    random: SplitMix64,
    contacts: u64,
    next_id: u64,
    now_ms: i64,
    step_ms: i64,
    id_prefix: String,
    identities: bool,
}

/// Contacts per company with [`EventGenerator::with_identities`]: contacts `8k..8k+8` work at one.
const CONTACTS_PER_COMPANY: u64 = 8;

/// Event kinds with their relative frequency.
const MIX: [(&str, u32); 14] = [
    ("page_visit", 400),
    ("email_open", 200),
    ("email_click", 80),
    ("ad_click", 40),
    ("asset_download", 50),
    ("webinar_attended", 15),
    ("form_submit", 30),
    ("add_to_cart", 10),
    ("checkout_abandoned", 5),
    ("profile_update", 40),
    ("unsubscribe", 4),
    ("hard_bounce", 3),
    ("manual_adjustment", 2),
    ("phase_change", 1),
];

const PAGES: [&str; 6] = [
    "https://acme.io/pricing",
    "https://acme.io/product/streams",
    "https://acme.io/features/decay",
    "https://acme.io/blog/lead-scoring",
    "https://acme.io/careers",
    "https://acme.io/",
];
const ASSETS: [&str; 4] = ["whitepaper-roi", "case-study-fintech", "ebook-kafka", "datasheet-pro"];
const DOMAINS: [&str; 8] = [
    "acme-customer.com",
    "globex.com",
    "initech.io",
    "umbrella.org",
    "gmail.com",
    "web.de",
    "hooli.com",
    "rivalsoft.com",
];
const INDUSTRIES: [&str; 5] = ["software", "financial services", "manufacturing", "retail", "education"];
const ROLES: [&str; 6] = ["cto", "ceo", "developer", "head of it", "student", "marketing manager"];
const PHASES: [&str; 4] = ["lead", "sql", "opportunity", "customer"];

impl EventGenerator {
    /// A generator over `contacts` contacts, starting at `start_ms`, with event times `step_ms` apart.
    pub fn new(seed: u64, contacts: u64, start_ms: i64, step_ms: i64) -> Self {
        EventGenerator {
            random: SplitMix64::new(seed),
            contacts: contacts.max(1),
            next_id: 0,
            now_ms: start_ms,
            step_ms,
            id_prefix: format!("g{seed:x}-"),
            identities: false,
        }
    }

    /// Also generates companies, anonymous visitors and duplicates (the stream without them is unchanged):
    /// - contacts name their company in `account_id` on forms and profile updates
    ///   ([`CONTACTS_PER_COMPANY`] contacts at each);
    /// - contact `n` browses as the anonymous visitor `anon-<n>` (6% of events, page visits carrying
    ///   their own id in `anonymous_id`) and identifies with `identify` events (2%) that name it;
    /// - a duplicate record `dup-<n>` of contact `n` (the CRM created it from another form) gets events
    ///   (1.5%), and `merge` events (0.5%) merge it into contact `n`.
    pub fn with_identities(mut self) -> Self {
        self.identities = true;
        self
    }

    /// The id of the anonymous visitor that contact `n` is before it identifies.
    pub fn visitor_id(n: u64) -> String {
        format!("anon-{n:07}")
    }

    /// The id of contact `n`'s duplicate record.
    pub fn duplicate_id(n: u64) -> String {
        format!("dup-{n:07}")
    }

    /// The contact id of index `n`.
    pub fn contact_id(n: u64) -> String {
        format!("contact-{n:07}")
    }

    /// Zipf-like draw over the contacts: P(k) ∝ 1/(k+1).
    fn contact(&mut self) -> u64 {
        let u = self.random.next_f64();
        let k = ((self.contacts as f64 + 1.0).ln() * u).exp() - 1.0;
        (k as u64).min(self.contacts - 1)
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.random.below(options.len() as u64) as usize]
    }

    fn kind(&mut self) -> &'static str {
        let total: u32 = MIX.iter().map(|(_, weight)| weight).sum();
        let mut roll = self.random.below(u64::from(total)) as u32;
        for (kind, weight) in MIX {
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        MIX[0].0
    }

    /// The next event.
    pub fn next_event(&mut self) -> Event {
        let n = self.contact();
        let mut event = self.event_of(Self::contact_id(n));
        if self.identities {
            self.add_identities(n, &mut event);
        }
        event
    }

    /// Turns `event` (of contact `n`) into an anonymous visit, an identify, a duplicate's event or a
    /// merge, at the rates of [`EventGenerator::with_identities`], and names the company on forms and
    /// profile updates.
    fn add_identities(&mut self, n: u64, event: &mut Event) {
        let roll = self.random.below(1000);
        match roll {
            0..60 => {
                let page = self.pick(&PAGES).to_owned();
                event.contact = Self::visitor_id(n);
                recast(event, "page_visit", Some(page), ("anonymous_id", Self::visitor_id(n)));
            }
            60..80 => recast(event, "identify", None, ("anonymous_id", Self::visitor_id(n))),
            95..100 => recast(event, "merge", None, ("merged", Self::duplicate_id(n))),
            _ => {
                if (80..95).contains(&roll) {
                    event.contact = Self::duplicate_id(n);
                }
                if event.kind == "form_submit" || event.kind == "profile_update" {
                    let company = format!("company-{:05}", n / CONTACTS_PER_COMPANY);
                    event.attrs.push(("account_id".into(), AttrValue::Text(company)));
                }
            }
        }
    }

    /// An event of a kind drawn from the mix, for `contact`.
    fn event_of(&mut self, contact: String) -> Event {
        let kind = self.kind();
        self.now_ms += self.step_ms;
        self.next_id += 1;
        let mut event = Event {
            id: format!("{}{}", self.id_prefix, self.next_id),
            contact,
            kind: kind.to_owned(),
            ts_ms: self.now_ms,
            item: None,
            attrs: Vec::new(),
            adjustment: None,
            phase: None,
        };
        match kind {
            "page_visit" => {
                event.item = Some(self.pick(&PAGES).to_owned());
                let source = self.pick(&["google", "bing", "direct", "newsletter"]);
                event.attrs.push(("source".into(), AttrValue::Text(source.into())));
                let visit = 1 + self.random.below(8);
                event.attrs.push(("visit_number".into(), AttrValue::Number(visit as f64)));
            }
            "email_open" | "email_click" => {
                event.item = Some(format!("newsletter-{}", 1 + self.random.below(12)));
            }
            "ad_click" => {
                let campaign = self.pick(&["paid-search-q1", "paid-social", "organic-referral"]);
                event.attrs.push(("campaign".into(), AttrValue::Text(campaign.into())));
            }
            "asset_download" => event.item = Some(self.pick(&ASSETS).to_owned()),
            "webinar_attended" => event.item = Some("webinar-kafka-101".into()),
            "form_submit" => {
                let form = if self.random.below(5) == 0 { "demo-request" } else { "newsletter" };
                event.item = Some(form.into());
                // Competitors are rare.
                let domain = if self.random.below(50) == 0 { "rivalsoft.com" } else { self.pick(&DOMAINS[..7]) };
                event.attrs.push(("email_domain".into(), AttrValue::Text(domain.into())));
            }
            "profile_update" => {
                event.attrs.push(("industry".into(), AttrValue::Text(self.pick(&INDUSTRIES).into())));
                let employees = 10u64 << self.random.below(10);
                event.attrs.push(("employees".into(), AttrValue::Number(employees as f64)));
                event.attrs.push(("role".into(), AttrValue::Text(self.pick(&ROLES).into())));
                event.attrs.push(("budget".into(), AttrValue::Flag(self.random.below(2) == 0)));
                event.attrs.push(("authority".into(), AttrValue::Flag(self.random.below(3) == 0)));
            }
            "manual_adjustment" => {
                let points = (self.random.below(41) as f64) - 10.0;
                event.adjustment = Some(ManualAdjustment {
                    points,
                    reason: self.pick(&["call went well", "met at trade fair", "asked for a quote"]).into(),
                    group: Some("fit".into()),
                    actor: Some(self.pick(&["sales:jonas", "sales:mia"]).into()),
                });
            }
            "phase_change" => event.phase = Some(self.pick(&PHASES).to_owned()),
            _ => {}
        }
        event
    }
}

/// Makes `event` one of `kind` with `item` and the one text attribute `attr`, and nothing else.
fn recast(event: &mut Event, kind: &str, item: Option<String>, (name, value): (&str, String)) {
    event.kind = kind.to_owned();
    event.item = item;
    event.attrs = vec![(name.to_owned(), AttrValue::Text(value))];
    event.adjustment = None;
    event.phase = None;
}

#[cfg(feature = "runtime")]
/// Produces `count` generated events as JSON, keyed by contact, with event times from now on; at `rate`
/// events per second, or as fast as the broker takes them when `rate` is 0. Returns the number sent.
pub fn produce(
    brokers: &str,
    topic: &str,
    count: u64,
    contacts: u64,
    rate: u32,
    seed: u64,
) -> Result<u64, rdkafka::error::KafkaError> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "10")
        .set("compression.type", "lz4")
        .create()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64);
    let mut generator = EventGenerator::new(seed, contacts, now, 10);
    let started = Instant::now();
    for sent in 0..count {
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / f64::from(rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let event = generator.next_event();
        let payload = crate::event::json::encode(&event);
        crate::kafka::send_when_queued(
            &producer,
            BaseRecord::to(topic).key(event.contact.as_bytes()).payload(&payload),
        )?;
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_skewed() {
        let mut a = EventGenerator::new(7, 1000, 1_772_366_400_000, 10);
        let mut b = EventGenerator::new(7, 1000, 1_772_366_400_000, 10);
        let mut hits = vec![0u32; 1000];
        for _ in 0..20_000 {
            let event = a.next_event();
            assert_eq!(event, b.next_event());
            let n: usize = event.contact["contact-".len()..].parse().unwrap_or(0);
            hits[n] += 1;
        }
        assert!(hits[0] > 10 * hits[900].max(1), "the head is much busier than the tail");
    }

    /// With identities, the example scorecard merges visitors and duplicates into their contacts and
    /// scores the companies (as the offline model scores the stream).
    #[test]
    fn identities_bring_visitors_duplicates_and_companies_the_example_scorecard_uses() {
        let mut generator = EventGenerator::new(7, 500, 1_772_366_400_000, 60_000).with_identities();
        let events: Vec<Event> = (0..20_000).map(|_| generator.next_event()).collect();
        let share =
            |test: &dyn Fn(&Event) -> bool| events.iter().filter(|event| test(event)).count() * 1000 / events.len();
        let named = |event: &Event, attr: &str| event.attrs.iter().any(|(name, _)| name == attr);
        assert!((50..70).contains(&share(&|event| event.contact.starts_with("anon-"))));
        assert!((14..26).contains(&share(&|event| event.kind == "identify" && named(event, "anonymous_id"))));
        assert!((10..20).contains(&share(&|event| event.contact.starts_with("dup-"))));
        assert!((2..8).contains(&share(&|event| event.kind == "merge" && named(event, "merged"))));
        assert!(share(&|event| named(event, "account_id")) > 50);
        let plain: Vec<Event> = {
            let mut generator = EventGenerator::new(7, 500, 1_772_366_400_000, 60_000);
            (0..20_000).map(|_| generator.next_event()).collect()
        };
        assert!(plain.iter().all(|event| event.contact.starts_with("contact-") && !named(event, "account_id")));

        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules.toml"));
        let rules = crate::rules::Rules::load(path).unwrap_or_else(|err| panic!("{err}"));
        let mut model = crate::offline::OfflineScorer::new(&rules, 4);
        for event in &events {
            let _ = model.score_line(&crate::event::json::encode(event));
        }
        let aliases = model.store().aliases();
        assert!(aliases.keys().any(|alias| alias.starts_with("anon-")), "visitors identified");
        assert!(aliases.keys().any(|alias| alias.starts_with("dup-")), "duplicates merged");
        assert!(model.accounts().accounts().len() > 40, "companies scored");
        assert!(model.accounts().accounts().values().any(|account| account.fired.iter().all(|fired| *fired)));
    }
}
