"""OMOP CDM v5.4 route: a study definition, an extract built by SQL in the database, and a
synthetic OMOP world written from the project's simulator to test it on."""
