"""Tests of the store: one contract on both backends, races, durability and a store that is down."""
