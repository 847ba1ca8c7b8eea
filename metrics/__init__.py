"""KPIs: the catalogue, the query language and the engine that answers in the database."""
