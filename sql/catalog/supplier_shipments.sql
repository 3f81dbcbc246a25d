-- export: supplier_shipments
-- description: A supplier's own shipped order lines in a date range (TPC-H lineitem). The
-- description: supplier is the caller's: each partner sees only its rows, whatever it asks.
-- allow: internal, suppliers
-- lookup: max_rows=500 cache=60s
-- param: suppliers list<integer> max_items=100 bound=supplier -- the caller's supplier keys (l_suppkey), from its access
-- param: ship_from date -- first ship date, inclusive (the data spans 1992-01-02 to 1998-12-01)
-- param: ship_to date -- last ship date, inclusive
SELECT l_suppkey, l_orderkey, l_linenumber, l_partkey, l_quantity, l_extendedprice,
       l_discount, l_shipdate, l_shipmode
FROM tpch.lineitem
WHERE l_suppkey IN (:suppliers)
  AND l_shipdate BETWEEN :ship_from AND :ship_to
ORDER BY l_suppkey, l_orderkey, l_linenumber
