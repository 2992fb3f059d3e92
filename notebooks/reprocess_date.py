# Databricks notebook source
# MAGIC %md
# MAGIC # Reprocess one whole date
# MAGIC Recomputes the date from its source and rewrites it idempotently (MERGE: unchanged
# MAGIC rows are not touched). Nothing happens until `confirm` is set to YES.

# COMMAND ----------

dbutils.widgets.text("job", "orders_daily", "Job")
dbutils.widgets.text("date", "", "Date to reprocess (YYYY-MM-DD)")
dbutils.widgets.dropdown("confirm", "no", ["no", "YES"], "Really reprocess?")
dbutils.widgets.text("conf", "", "Config file (conf/databricks.toml on Databricks)")
dbutils.widgets.text("lakehouse", "", "Local lakehouse root (local runs only)")

# COMMAND ----------

from framework.notebook import raise_for_status, report_frame, reprocess_from_widgets

report = reprocess_from_widgets(spark, dbutils.widgets)

# COMMAND ----------

display(report_frame(spark, report))

# COMMAND ----------

raise_for_status(report)
