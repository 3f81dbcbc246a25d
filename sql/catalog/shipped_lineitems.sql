-- export: shipped_lineitems
-- description: Order lines shipped in a date range, with their order's date and customer
-- description: (TPC-H lineitem joined to orders). Large: the whole table is about 6 million
-- description: rows per unit of scale.
-- allow: internal
-- param: ship_from date -- first ship date, inclusive (the data spans 1992-01-02 to 1998-12-01)
-- param: ship_to date -- last ship date, inclusive
-- param: min_quantity decimal(15,2) optional -- only lines of at least this quantity
SELECT l.l_orderkey, l.l_linenumber, o.o_orderdate, o.o_custkey, l.l_partkey, l.l_suppkey,
       l.l_quantity, l.l_extendedprice, l.l_discount, l.l_tax, l.l_returnflag, l.l_shipdate,
       l.l_shipmode
FROM tpch.lineitem l
JOIN tpch.orders o ON o.o_orderkey = l.l_orderkey
WHERE l.l_shipdate BETWEEN :ship_from AND :ship_to
  AND (:min_quantity IS NULL OR l.l_quantity >= :min_quantity)
ORDER BY l.l_orderkey, l.l_linenumber
