# The seed guide's resume snippet, as written; LOCATION and TOKEN come from
# the environment.
TOKEN="${ROUGHY_TOKEN:?}"
LOCATION="${ROUGHY_LOCATION:?}"
OFFSET=$(curl -sf -I -X HEAD "$LOCATION" \
-H "Authorization: Bearer $TOKEN" \
-H "Tus-Resumable: 1.0.0" \
| awk -F': ' 'tolower($1) == "upload-offset" { gsub(/\r/, "", $2); print $2 }')
echo "Resume from offset $OFFSET"
