//! Price catalog: name normalisation, exact cost arithmetic, imports.

use crate::common::d;
use switchyard::prices::{PriceCatalog, name_candidates};
use switchyard::record::Usage;

#[test]
fn candidates_strip_prefixes_dates_and_variants() {
    let c = name_candidates("openrouter/openai/gpt-4o-mini-2024-07-18:free");
    assert!(c.contains(&"gpt-4o-mini".to_string()), "{c:?}");
    let c = name_candidates("bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0");
    assert!(c.contains(&"claude-haiku-4-5".to_string()), "{c:?}");
}

#[test]
fn real_names_find_their_price() {
    let cat = PriceCatalog::embedded().unwrap();
    for name in [
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "openai/gpt-4o-mini",
        "OpenAI/GPT-4o-mini",
        "openrouter/openai/gpt-4o-mini",
    ] {
        let p = cat
            .lookup(name)
            .unwrap_or_else(|| panic!("{name} has no price"));
        assert_eq!(p.input, d("0.15"), "{name}");
        assert_eq!(p.output, d("0.6"), "{name}");
    }
    assert!(cat.lookup("acme/unheard-of-model-9").is_none());
}

#[test]
fn cost_prices_each_token_kind_at_its_own_rate() {
    let cat = PriceCatalog::embedded().unwrap();
    // claude-haiku-4-5: input 1, output 5, cache read 0.1, cache write 1.25 USD / 1M tokens.
    let u = Usage {
        prompt: 10_000,
        completion: 2_000,
        cached: 6_000,
        cache_write: 1_000,
        reasoning: 500,
    };
    let by_hand = (d("3000") * d("1")
        + d("6000") * d("0.1")
        + d("1000") * d("1.25")
        + d("1500") * d("5")
        + d("500") * d("5"))
        / d("1000000");
    assert_eq!(cat.cost("anthropic/claude-haiku-4-5", &u), Some(by_hand));
    assert_eq!(by_hand, d("0.01485"));
}
