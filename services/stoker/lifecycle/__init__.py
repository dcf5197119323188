"""Job lifecycle services: submission, launch, monitoring, retries."""
