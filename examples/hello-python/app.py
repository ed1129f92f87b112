# Says hello: invoke with {"name": "Ada"} to get {"message": "Hello, Ada!"}.
def handler(event, context):
    name = event.get("name", "world")
    print(f"Saying hello to {name}")
    return {"message": f"Hello, {name}!"}
