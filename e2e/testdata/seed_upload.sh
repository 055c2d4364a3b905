# The raw cURL upload script of the seed guide (seed/000_77e8abe121c92617.txt,
# "Raw cURL"), as written there. Only the TOKEN/API/FILE assignments take
# their values from the environment, and the size line uses Linux stat.
TOKEN="${ROUGHY_TOKEN:?}"
API="${ROUGHY_API:?}"
FILE="${ROUGHY_FILE:?}"
CHUNK_SIZE=$((64 * 1024 * 1024)) # 64 MiB
SIZE=$(stat -c%s "$FILE") # Linux (the guide's macOS line: stat -f%z "$FILE")
b64() { printf '%s' "$1" | base64 | tr -d '\n'; }
# 1. Initiate the session
INIT=$(curl -sf -X POST "$API/api/v1/assets/upload-resumable" \
-H "Authorization: Bearer $TOKEN" \
-H "Tus-Resumable: 1.0.0" \
-H "Upload-Length: $SIZE" \
-H "Upload-Metadata: type $(b64 'video'),content_type $(b64 'video/mp4'),filename $(b64 "$(basename "$FILE")")")
SESSION_ID=$(echo "$INIT" | jq -r '.session_id')
ASSET_ID=$(echo "$INIT" | jq -r '.asset.id')
LOCATION="$API/api/v1/assets/upload-resumable/$SESSION_ID"
# 2. PATCH chunks
OFFSET=0
while [ $OFFSET -lt $SIZE ]; do
REMAINING=$((SIZE - OFFSET))
THIS=$((REMAINING < CHUNK_SIZE ? REMAINING : CHUNK_SIZE))
tail -c +$((OFFSET + 1)) "$FILE" | head -c "$THIS" | \
curl -sf -X PATCH "$LOCATION" \
-H "Authorization: Bearer $TOKEN" \
-H "Tus-Resumable: 1.0.0" \
-H "Upload-Offset: $OFFSET" \
-H "Content-Type: application/offset+octet-stream" \
-H "Content-Length: $THIS" \
--data-binary @-
OFFSET=$((OFFSET + THIS))
done
echo "Uploaded $OFFSET / $SIZE bytes; asset_id=$ASSET_ID"
