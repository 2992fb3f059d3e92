# Databricks notebook source
# MAGIC %md
# MAGIC # Partition status of a ninelives job
# MAGIC The state of every partition, the runbook for what is shown and the exact command
# MAGIC that recovers it, then the ledger's rows.

# COMMAND ----------

dbutils.widgets.text("job", "orders_daily", "Job")
dbutils.widgets.text("date", "", "Date (YYYY-MM-DD)")
dbutils.widgets.text("from", "", "From (YYYY-MM-DD)")
dbutils.widgets.text("to", "", "To (YYYY-MM-DD)")
dbutils.widgets.text("conf", "", "Config file (conf/databricks.toml on Databricks)")
dbutils.widgets.text("lakehouse", "", "Local lakehouse root (local runs only)")

# COMMAND ----------

from framework.notebook import ledger_frame, status_text

print(status_text(spark, dbutils.widgets))

# COMMAND ----------

display(ledger_frame(spark, dbutils.widgets))
