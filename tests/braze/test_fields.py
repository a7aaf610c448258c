"""Computed loyalty fields read plain rows; no database needed."""

from braze_integration.fields import STATIC_FIELDS, FieldContext

FIELDS = {f.key: f for f in STATIC_FIELDS}
TIERS = FieldContext(tier_thresholds=[(0, "Bronze"), (500, "Silver"), (2000, "Gold")])


def test_next_tier_and_points_to_it_come_from_the_lowest_tier_not_yet_reached():
    row = {"points_earned": 600}

    assert FIELDS["next_tier"].extract(row, TIERS) == "Gold"
    assert FIELDS["points_to_next_tier"].extract(row, TIERS) == 1400


def test_a_member_in_the_top_tier_has_no_next_tier():
    row = {"points_earned": 5000}

    assert FIELDS["next_tier"].extract(row, TIERS) is None
    assert FIELDS["points_to_next_tier"].extract(row, TIERS) is None


def test_last_purchase_products_lists_the_items_product_ids():
    row = {"last_purchase": {"items": [{"product_id": "a"}, {"product_id": 7}, "junk"]}}

    assert FIELDS["last_purchase_products"].extract(row, TIERS) == ["a", "7"]
