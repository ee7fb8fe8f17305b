//! Metrics evidence (`--metrics URL`): the Prometheus exposition scraped before and after the
//! probe and parsed with a real parser (prometheus-parse). Judged in `analyze::resources`.

use std::time::Duration;

use serde::Serialize;

/// What one scrape says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reading {
    /// `process_resident_memory_bytes`.
    pub rss_bytes: Option<f64>,
    /// `process_start_time_seconds`.
    pub start_time_seconds: Option<f64>,
    /// `metrics_app_leaked_bytes`.
    pub leaked_bytes: Option<f64>,
    /// Modes with `metrics_app_fault_active == 1`.
    pub fault_modes: Vec<String>,
    /// Series in the scrape.
    pub series: usize,
}

/// Parses a text exposition; an error names what the parser rejected.
pub fn parse(text: &str) -> Result<Reading, String> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| format!("not a Prometheus exposition: {e}"))?;
    let mut r = Reading {
        series: scrape.samples.len(),
        ..Reading::default()
    };
    for s in &scrape.samples {
        let value = match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        match s.metric.as_str() {
            "process_resident_memory_bytes" => r.rss_bytes = Some(value),
            "process_start_time_seconds" => r.start_time_seconds = Some(value),
            "metrics_app_leaked_bytes" => r.leaked_bytes = Some(value),
            "metrics_app_fault_active" if value >= 1.0 => {
                if let Some(mode) = s.labels.get("mode") {
                    r.fault_modes.push(mode.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

/// Scrapes and parses `url`; failures become notes naming the URL and the moment.
pub async fn scrape(
    url: &str,
    timeout: Duration,
    notes: &mut Vec<String>,
    when: &str,
) -> Option<Reading> {
    let client = crate::http()
        .timeout(timeout.max(Duration::from_secs(2)))
        .no_proxy()
        .build()
        .ok()?;
    let text = match client.get(url).send().await {
        Ok(r) => match r.text().await {
            Ok(t) => t,
            Err(e) => {
                notes.push(format!("metrics {when} the probe: {url}: {e}"));
                return None;
            }
        },
        Err(e) => {
            notes.push(format!(
                "metrics {when} the probe: {url} did not answer: {e}"
            ));
            return None;
        }
    };
    match parse(&text) {
        Ok(r) => Some(r),
        Err(e) => {
            notes.push(format!("metrics {when} the probe: {url}: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE process_resident_memory_bytes gauge\n\
        process_resident_memory_bytes 10485760\n\
        # TYPE metrics_app_fault_active gauge\n\
        metrics_app_fault_active{mode=\"leak\"} 1\n";

    #[test]
    fn parses_the_readings_it_needs() {
        let r = parse(BEFORE).expect("parse");
        assert_eq!(r.rss_bytes, Some(10_485_760.0));
        assert_eq!(r.fault_modes, vec!["leak".to_string()]);
    }
}
