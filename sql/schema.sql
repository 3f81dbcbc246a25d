-- Demo schema for the product_detail export: the table of the original sample, with a
-- creation date added. Runs as-is on Redshift; the local warehouse runs it at start-up.
CREATE SCHEMA rsdataapi;

CREATE TABLE rsdataapi.product_detail (
    sku                 VARCHAR(20),
    product_id          INT,
    product_name        VARCHAR(50),
    product_description VARCHAR(50),
    created_on          DATE
);

INSERT INTO rsdataapi.product_detail VALUES
    ('FLOWER12', 12345, 'Flowers - Rose',      'Flowers-Rose',      CAST('2023-03-01' AS DATE)),
    ('FLOWER13', 12346, 'Flowers - Jasmine',   'Flowers-Jasmine',   CAST('2023-03-01' AS DATE)),
    ('FLOWER14', 12347, 'Flowers - Other',     'Flowers-Other',     CAST('2023-03-02' AS DATE)),
    ('FLOWER15', 12348, 'Flowers - Tulip',     'Flowers-Tulip',     CAST('2023-04-11' AS DATE)),
    ('FLOWER16', 12349, 'Flowers - Lily',      'Flowers-Lily',      CAST('2023-04-11' AS DATE)),
    ('FLOWER17', 12350, 'Flowers - Orchid',    'Flowers-Orchid',    CAST('2023-05-20' AS DATE)),
    ('PLANT21',  22001, 'Plants - Fern',       'Plants-Fern',       CAST('2023-06-02' AS DATE)),
    ('PLANT22',  22002, 'Plants - Cactus',     'Plants-Cactus',     CAST('2023-06-02' AS DATE)),
    ('PLANT23',  22003, 'Plants - Bonsai',     'Plants-Bonsai',     CAST('2023-07-15' AS DATE)),
    ('SEED31',   31001, 'Seeds - Sunflower',   'Seeds-Sunflower',   CAST('2023-08-01' AS DATE)),
    ('SEED32',   31002, 'Seeds - Basil',       'Seeds-Basil',       CAST('2023-08-01' AS DATE)),
    ('POT41',    41001, 'Pots - Terracotta',   'Pots-Terracotta',   CAST('2023-09-09' AS DATE)),
    ('POT42',    41002, 'Pots - Glazed',       'Pots-Glazed',       CAST('2023-09-09' AS DATE)),
    -- Awkward keys, so exports can be checked to match exactly and only these.
    ('O''NEIL\\7',  90001, 'Gardener''s Kit',     'Quote and backslash',  CAST('2024-01-01' AS DATE)),
    ('--;/*x*/',   90002, 'Comment Characters',  'Looks like SQL',       CAST('2024-01-01' AS DATE)),
    ('Bläumchen',  90003, 'Blümchen - Ünïcödé',  'Non-ASCII',            CAST('2024-01-02' AS DATE));
