-- export: customers
-- description: Customer profiles for a list of customer keys, optionally in one market segment.
-- allow: internal
-- lookup: max_rows=1000 cache=180s
-- param: ids list<integer> max_items=1000 min=1 -- customer keys (c_custkey)
-- param: segment enum(AUTOMOBILE|BUILDING|FURNITURE|HOUSEHOLD|MACHINERY) optional -- market segment
SELECT c_custkey, c_name, c_address, c_nationkey, c_phone, c_acctbal, c_mktsegment, c_comment
FROM tpch.customer
WHERE c_custkey IN (:ids)
  AND (:segment IS NULL OR c_mktsegment = :segment)
ORDER BY c_custkey
