-- export: product_detail
-- description: One product's details by SKU, optionally narrowed by name and creation date.
-- description: This is the original sample's query; POST /product submits it.
-- lookup: max_rows=100 cache=60s
-- param: sku text max_length=20 -- the product's stock-keeping unit, e.g. FLOWER12
-- param: product_name text max_length=50 optional -- only if the product has exactly this name
-- param: created_on date optional -- only if the product was created on this day
SELECT sku, product_id, product_name, product_description, created_on
FROM rsdataapi.product_detail
WHERE sku = :sku
  AND (:product_name IS NULL OR product_name = :product_name)
  AND (:created_on IS NULL OR created_on = :created_on)
ORDER BY product_id
