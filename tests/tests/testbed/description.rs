//! The test bed's description (tests/support/testbed/description.json), which both harnesses and
//! the server read: what it says is what the test bed does.

use e2e_tests::{described, description, http, TestBed, ACCOUNT};

#[tokio::test]
async fn the_test_bed_answers_every_route_its_description_names_and_serves_its_account() {
    let bed = TestBed::start();

    let routes = description()["routes"]
        .as_object()
        .expect("description.json: routes");
    assert!(routes.len() > 20, "the description names the routes");
    for route in routes.keys() {
        let (status, text) = http(bed.port, "GET", route, "");
        assert_ne!(status, 404, "{route} is not served: {text}");
        let answer: Result<serde_json::Value, _> = serde_json::from_str(&text);
        assert!(answer.is_ok(), "{route} answers JSON, got {status} {text}");
    }
    let (status, _) = http(bed.port, "GET", "/_testbed/no-such-route", "");
    assert_ne!(
        status, 200,
        "a route the description does not name is not a test route"
    );

    assert_eq!(described("/account"), ACCOUNT);
    assert!(
        bed.signing_key.contains(&format!(":{ACCOUNT}:key/")),
        "the stack's key is made in the described account: {}",
        bed.signing_key
    );
}
