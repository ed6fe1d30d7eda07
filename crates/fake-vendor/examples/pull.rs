//! Pulls every record through the cursor listing and prints the rate: `pull [RECORDS] [LIMIT]`.

use std::time::Instant;

use dovetail_fake_vendor::{FakeVendor, VendorConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let limit: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let vendor =
        FakeVendor::start(VendorConfig { records, page_size_max: limit.max(1000), ..Default::default() }).await?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut url = format!("{}/v1/items/next?limit={limit}", vendor.base_url());
    let mut total = 0u64;
    loop {
        let page: serde_json::Value = client.get(&url).send().await?.error_for_status()?.json().await?;
        total += page["data"].as_array().map_or(0, |a| a.len() as u64);
        match page["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{total} records in {secs:.2}s: {:.0} records/s", total as f64 / secs);
    vendor.shutdown().await;
    Ok(())
}
