"""Operating the function: the per-request log line and its CloudWatch
metrics, X-Ray tracing, SnapStart hooks and the lazy-import hook the
package installs before the app is imported."""
