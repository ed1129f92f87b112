// Says hello: invoke with {"name": "Ada"} to get {"message": "Hello, Ada!"}.
export const handler = async (event, context) => {
  const name = event?.name ?? "world";
  console.log(`Saying hello to ${name}`);
  return { message: `Hello, ${name}!` };
};
