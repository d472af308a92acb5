//! The soak's short mode: a minute of mixed traffic through rotations, a rewrap and outages on
//! every link, with zero unexpected errors and flat memory and descriptors. `ops/soak` runs the
//! five-minute version.

use strongbox_tests::soak::{self, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_mixed_traffic_through_rotations_and_outages_stays_clean() {
    let report = soak::run(Settings::short()).await;
    eprintln!("{}", report.render());
    assert!(report.problems().is_empty(), "{:?}", report.problems());
    assert!(report.requests > 100, "traffic ran: {}", report.requests);
    assert!(report.events.iter().any(|(_, e)| e.starts_with("rewrap done")), "{:?}", report.events);
    // The outages were felt: some requests failed, each with its stable code.
    assert!(!report.errors.is_empty(), "the outages failed nothing");
}
